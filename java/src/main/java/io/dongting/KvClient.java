package io.dongting;

import java.lang.ref.Cleaner;
import java.util.Iterator;
import java.util.List;
import java.util.Map;
import java.util.NoSuchElementException;
import java.util.Objects;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.Executor;

/**
 * A DtKV client: every operation of the original Java Dongting {@code KvClient}, with the
 * same names and argument order (raft group id first), blocking and as {@code ...Async}
 * returning a {@link CompletableFuture}.
 *
 * <p>{@code servers} are service addresses ({@code "host:port,host:port"}; port 0 is
 * refused). Each call takes at most the client's timeout, retries included, and follows
 * leader changes. Group ids are 0 to {@link Integer#MAX_VALUE}; TTLs and lock leases are 1 to
 * {@link #MAX_TTL_MILLIS} ms; list page limits 0 (the default) to {@link #MAX_PAGE_LIMIT}. A
 * number out of range is an {@link InvalidArgumentException} naming the argument and the
 * value given, before anything is sent (a TTL of 0 or above the maximum is
 * {@link InvalidTtlException}, as DtKV answers for it). Keys are
 * dot-separated paths ({@code "app.db.url"}) given as {@code String} or UTF-8 {@code byte[]};
 * the empty key is the root directory. Errors are unchecked {@link DongtingException}s (from
 * the blocking forms directly, from the asynchronous forms through the future).
 *
 * <p>Asynchronous forms copy their arguments before returning and never block; their futures
 * complete on the client's executor (by default its runtime's, the common pool), never on an
 * IO thread. Many calls may be in flight at once. Cancelling a future stops waiting for the
 * answer, not the call (a write already sent may be applied).
 *
 * <p>Thread-safe. Close it (try-with-resources) to release its connections; a client that
 * becomes unreachable without being closed is closed by a cleaner.
 */
public final class KvClient implements AutoCloseable {
    /** Default per-call timeout, retries included. */
    public static final long DEFAULT_TIMEOUT_MILLIS = 5_000;
    /** Longest per-call timeout (one day); also the longest {@link KvWatch#poll} wait. */
    public static final long MAX_TIMEOUT_MILLIS = 86_400_000;
    /** Longest TTL, lock lease and lock wait: 30 days, the longest DtKV takes. */
    public static final long MAX_TTL_MILLIS = 2_592_000_000L;
    /** Most children one {@link #listPage} asks for; a limit of 0 asks for the server's default (1,000). */
    public static final int MAX_PAGE_LIMIT = 10_000;

    private static final Cleaner CLEANER = Cleaner.create();
    private static final byte[] EMPTY = new byte[0];

    private final long handle;
    private final DongtingRuntime runtime;
    private final Executor executor;
    private final Cleaner.Cleanable cleanable;

    /**
     * A client on the default runtime with the default timeout. Connects lazily, on the first
     * call.
     *
     * @param servers service addresses, comma-separated
     */
    public KvClient(String servers) {
        this(servers, DEFAULT_TIMEOUT_MILLIS, null, null);
    }

    /**
     * A client on the default runtime.
     *
     * @param servers service addresses, comma-separated
     * @param timeoutMillis per-call timeout, retries included (1 to {@link #MAX_TIMEOUT_MILLIS})
     */
    public KvClient(String servers, long timeoutMillis) {
        this(servers, timeoutMillis, null, null);
    }

    private KvClient(String servers, long timeoutMillis, DongtingRuntime runtime, Executor executor) {
        Objects.requireNonNull(servers, "servers");
        Args.range("timeoutMillis", timeoutMillis, 1, MAX_TIMEOUT_MILLIS);
        this.runtime = runtime != null ? runtime : DongtingRuntime.defaultRuntime();
        this.executor = executor != null ? executor : this.runtime.executor();
        long h = Codec.handle(Native.clientNew(this.runtime.handle(), Codec.utf8(servers), timeoutMillis));
        this.handle = h;
        this.cleanable = CLEANER.register(this, () -> Native.clientClose(h));
    }

    /**
     * A builder for a client with a chosen timeout, runtime or executor.
     *
     * @param servers service addresses, comma-separated
     * @return the builder
     */
    public static Builder builder(String servers) {
        return new Builder(servers);
    }

    /** Options of a {@link KvClient}. */
    public static final class Builder {
        private final String servers;
        private long timeoutMillis = DEFAULT_TIMEOUT_MILLIS;
        private DongtingRuntime runtime;
        private Executor executor;

        private Builder(String servers) {
            this.servers = Objects.requireNonNull(servers, "servers");
        }

        /**
         * @param timeoutMillis per-call timeout, retries included (1 to {@link #MAX_TIMEOUT_MILLIS})
         * @return this builder
         */
        public Builder timeoutMillis(long timeoutMillis) {
            this.timeoutMillis = timeoutMillis;
            return this;
        }

        /**
         * @param runtime the runtime to run on (default: {@link DongtingRuntime#defaultRuntime()})
         * @return this builder
         */
        public Builder runtime(DongtingRuntime runtime) {
            this.runtime = Objects.requireNonNull(runtime, "runtime");
            return this;
        }

        /**
         * @param executor where asynchronous results complete (default: the runtime's)
         * @return this builder
         */
        public Builder executor(Executor executor) {
            this.executor = Objects.requireNonNull(executor, "executor");
            return this;
        }

        /** @return the client */
        public KvClient build() {
            return new KvClient(servers, timeoutMillis, runtime, executor);
        }
    }

    /** @return the write session id of this client (the owner of its temporary nodes) */
    public long clientId() {
        return Native.clientId(handle);
    }

    /**
     * Fails new calls with {@link ClosedException}; connections close once calls in flight
     * finish (blocks up to about one second). Idempotent.
     */
    @Override
    public void close() {
        cleanable.clean();
    }

    private static byte[] key(String key) {
        return Codec.utf8(Objects.requireNonNull(key, "key"));
    }

    private static byte[] key(byte[] key) {
        return Objects.requireNonNull(key, "key");
    }

    private static byte[] value(byte[] value) {
        return Objects.requireNonNull(value, "value");
    }

    private static byte[][] keys(List<byte[]> keys) {
        Objects.requireNonNull(keys, "keys");
        byte[][] out = new byte[keys.size()][];
        for (int i = 0; i < out.length; i++) {
            out[i] = Objects.requireNonNull(keys.get(i), "key");
        }
        return out;
    }

    private static byte[][] keys(String[] keys) {
        Objects.requireNonNull(keys, "keys");
        byte[][] out = new byte[keys.length][];
        for (int i = 0; i < out.length; i++) {
            out[i] = key(keys[i]);
        }
        return out;
    }

    private <T> CompletableFuture<T> async(java.util.function.Function<Codec.Reply, T> conv, DongtingRuntime.Start s) {
        return runtime.submit(executor, conv, s);
    }

    // ---- put

    /**
     * Creates or overwrites a value; its parent directory must exist.
     *
     * @param groupId the raft group
     * @param key the key
     * @param value the value (not empty)
     * @return the raft index and whether the key was created
     */
    public WriteResult put(int groupId, byte[] key, byte[] value) {
        return Codec.write(Codec.reply(Native.put(handle, groupId, key(key), value(value))));
    }

    /** @see #put(int, byte[], byte[]) */
    public WriteResult put(int groupId, String key, byte[] value) {
        return put(groupId, key(key), value);
    }

    /** Like {@link #put(int, byte[], byte[])} with the value encoded as UTF-8. */
    public WriteResult put(int groupId, String key, String value) {
        return put(groupId, key(key), Codec.utf8(Objects.requireNonNull(value, "value")));
    }

    /** @see #put(int, byte[], byte[]) */
    public CompletableFuture<WriteResult> putAsync(int groupId, byte[] key, byte[] value) {
        byte[] k = key(key);
        byte[] v = value(value);
        return async(Codec::write, t -> Native.putAsync(handle, t, groupId, k, v));
    }

    /** @see #put(int, byte[], byte[]) */
    public CompletableFuture<WriteResult> putAsync(int groupId, String key, byte[] value) {
        return putAsync(groupId, key(key), value);
    }

    /** @see #put(int, String, String) */
    public CompletableFuture<WriteResult> putAsync(int groupId, String key, String value) {
        return putAsync(groupId, key(key), Codec.utf8(Objects.requireNonNull(value, "value")));
    }

    // ---- get

    /**
     * Reads a node, linearizably.
     *
     * @param groupId the raft group
     * @param key the key
     * @return the node, or null when the key does not exist
     */
    public KvNode get(int groupId, byte[] key) {
        return Codec.node(Codec.reply(Native.get(handle, groupId, key(key))));
    }

    /** @see #get(int, byte[]) */
    public KvNode get(int groupId, String key) {
        return get(groupId, key(key));
    }

    /** @see #get(int, byte[]) */
    public CompletableFuture<KvNode> getAsync(int groupId, byte[] key) {
        byte[] k = key(key);
        return async(Codec::node, t -> Native.getAsync(handle, t, groupId, k));
    }

    /** @see #get(int, byte[]) */
    public CompletableFuture<KvNode> getAsync(int groupId, String key) {
        return getAsync(groupId, key(key));
    }

    // ---- remove

    /**
     * Removes a value or an empty directory.
     *
     * @param groupId the raft group
     * @param key the key
     * @return the raft index
     * @throws NotFoundException when the key does not exist
     * @throws DirNotEmptyException when the directory has children
     */
    public WriteResult remove(int groupId, byte[] key) {
        return Codec.write(Codec.reply(Native.remove(handle, groupId, key(key))));
    }

    /** @see #remove(int, byte[]) */
    public WriteResult remove(int groupId, String key) {
        return remove(groupId, key(key));
    }

    /** @see #remove(int, byte[]) */
    public CompletableFuture<WriteResult> removeAsync(int groupId, byte[] key) {
        byte[] k = key(key);
        return async(Codec::write, t -> Native.removeAsync(handle, t, groupId, k));
    }

    /** @see #remove(int, byte[]) */
    public CompletableFuture<WriteResult> removeAsync(int groupId, String key) {
        return removeAsync(groupId, key(key));
    }

    // ---- mkdir

    /**
     * Creates a directory (its parent must exist).
     *
     * @param groupId the raft group
     * @param key the directory's key
     * @return the raft index and whether it was created (false: it existed)
     */
    public WriteResult mkdir(int groupId, byte[] key) {
        return Codec.write(Codec.reply(Native.mkdir(handle, groupId, key(key))));
    }

    /** @see #mkdir(int, byte[]) */
    public WriteResult mkdir(int groupId, String key) {
        return mkdir(groupId, key(key));
    }

    /** @see #mkdir(int, byte[]) */
    public CompletableFuture<WriteResult> mkdirAsync(int groupId, byte[] key) {
        byte[] k = key(key);
        return async(Codec::write, t -> Native.mkdirAsync(handle, t, groupId, k));
    }

    /** @see #mkdir(int, byte[]) */
    public CompletableFuture<WriteResult> mkdirAsync(int groupId, String key) {
        return mkdirAsync(groupId, key(key));
    }

    // ---- list

    /**
     * All the children of a directory, in key order. A directory of any size lists: the
     * children are read a page at a time (as {@link #listPage}), each page at its own raft
     * index, so the whole is not a snapshot: a child added or removed during the listing may or
     * may not appear.
     *
     * @param groupId the raft group
     * @param key the directory ({@code ""}: the root)
     * @return its children
     * @throws NotFoundException when the directory does not exist
     * @throws NotDirException when the key is not a directory
     */
    public List<KvNode> list(int groupId, byte[] key) {
        return Codec.list(Codec.reply(Native.list(handle, groupId, key(key))));
    }

    /** @see #list(int, byte[]) */
    public List<KvNode> list(int groupId, String key) {
        return list(groupId, key(key));
    }

    /** @see #list(int, byte[]) */
    public CompletableFuture<List<KvNode>> listAsync(int groupId, byte[] key) {
        byte[] k = key(key);
        return async(Codec::list, t -> Native.listAsync(handle, t, groupId, k));
    }

    /** @see #list(int, byte[]) */
    public CompletableFuture<List<KvNode>> listAsync(int groupId, String key) {
        return listAsync(groupId, key(key));
    }

    // ---- listPage

    private static int limit(int limit) {
        return (int) Args.range("limit", limit, 0, MAX_PAGE_LIMIT);
    }

    /**
     * One page of a directory's children: those whose key sorts after {@code startAfter}, in key
     * order, at most {@code limit} of them and under the server's byte cap for one answer (so a
     * page may hold fewer than {@code limit} while more follow). Read the next page from
     * {@link KvPage#nextAfter()} while {@link KvPage#more()}. Each page is read at its own raft
     * index: pages read one after the other are not a snapshot of the directory.
     *
     * @param groupId the raft group
     * @param dir the directory ({@code ""}: the root)
     * @param startAfter a full key, typically the previous page's {@link KvPage#nextAfter()};
     *     empty or null: from the first child
     * @param limit most children in the page: 1 to {@link #MAX_PAGE_LIMIT}, or 0 for the
     *     server's default (1,000)
     * @return the page; {@link KvPage#more()} says whether children follow it
     * @throws InvalidArgumentException when {@code limit} is out of range (before anything is
     *     sent)
     * @throws NotFoundException when the directory does not exist
     * @throws NotDirException when {@code dir} is not a directory
     */
    public KvPage listPage(int groupId, byte[] dir, byte[] startAfter, int limit) {
        int n = limit(limit);
        return Codec.page(Codec.reply(Native.listPage(handle, groupId, key(dir), orEmpty(startAfter), n)));
    }

    /**
     * {@link #listPage(int, byte[], byte[], int)} with text keys: pass the previous page's
     * {@link KvPage#nextAfterString()} as {@code startAfter}.
     */
    public KvPage listPage(int groupId, String dir, String startAfter, int limit) {
        return listPage(groupId, key(dir), startAfter == null ? EMPTY : Codec.utf8(startAfter), limit);
    }

    /** @see #listPage(int, byte[], byte[], int) */
    public CompletableFuture<KvPage> listPageAsync(int groupId, byte[] dir, byte[] startAfter, int limit) {
        int n = limit(limit);
        byte[] d = key(dir);
        byte[] a = orEmpty(startAfter);
        return async(Codec::page, t -> Native.listPageAsync(handle, t, groupId, d, a, n));
    }

    /** @see #listPage(int, String, String, int) */
    public CompletableFuture<KvPage> listPageAsync(int groupId, String dir, String startAfter, int limit) {
        return listPageAsync(groupId, key(dir), startAfter == null ? EMPTY : Codec.utf8(startAfter), limit);
    }

    /**
     * The children of a directory in key order, read lazily with {@link #listPage} a page of
     * {@code limit} at a time as the iteration goes. Each {@link Iterable#iterator()} starts
     * again from the first child; its {@code hasNext()} blocks while it reads a page and throws
     * that read's {@link DongtingException}. As with {@link #list}, the pages are read at their
     * own raft indexes, so the whole is not a snapshot.
     *
     * @param groupId the raft group
     * @param dir the directory ({@code ""}: the root)
     * @param limit children per page: 1 to {@link #MAX_PAGE_LIMIT}, or 0 for the server's
     *     default (1,000)
     * @return the children, as an iterable
     * @throws InvalidArgumentException when {@code groupId} or {@code limit} is out of range
     */
    public Iterable<KvNode> iterList(int groupId, byte[] dir, int limit) {
        Args.range("groupId", groupId, 0, Integer.MAX_VALUE);
        int n = limit(limit);
        byte[] d = key(dir).clone();
        return () -> new PageIterator(groupId, d, n);
    }

    /** @see #iterList(int, byte[], int) */
    public Iterable<KvNode> iterList(int groupId, String dir, int limit) {
        return iterList(groupId, key(dir), limit);
    }

    /** Walks a directory page by page (see {@link #iterList(int, byte[], int)}). */
    private final class PageIterator implements Iterator<KvNode> {
        private final int groupId;
        private final byte[] dir;
        private final int limit;
        /** The page being walked; null before the first read. */
        private KvPage page;
        private int next;

        PageIterator(int groupId, byte[] dir, int limit) {
            this.groupId = groupId;
            this.dir = dir;
            this.limit = limit;
        }

        @Override
        public boolean hasNext() {
            while (page == null || next >= page.size()) {
                // An empty page ends the walk even if it claimed more: it gives no key to
                // resume after.
                if (page != null && (!page.more() || page.size() == 0)) {
                    return false;
                }
                KvPage p = listPage(groupId, dir, page == null ? EMPTY : page.nextAfter(), limit);
                page = p;
                next = 0;
            }
            return true;
        }

        @Override
        public KvNode next() {
            if (!hasNext()) {
                throw new NoSuchElementException();
            }
            return page.nodes().get(next++);
        }
    }

    // ---- batchPut

    /**
     * Sets several keys in one raft entry.
     *
     * @param groupId the raft group
     * @param keys the keys
     * @param values one value per key
     * @return one code per key in {@link WriteResult#codes()} (0: done)
     */
    public WriteResult batchPut(int groupId, List<byte[]> keys, List<byte[]> values) {
        return Codec.write(Codec.reply(Native.batchPut(handle, groupId, keys(keys), values(values))));
    }

    /**
     * Like {@link #batchPut(int, List, List)}; the codes follow the map's iteration order (use
     * a {@link java.util.LinkedHashMap} to choose it).
     */
    public WriteResult batchPut(int groupId, Map<String, byte[]> entries) {
        byte[][][] kv = entries(entries);
        return Codec.write(Codec.reply(Native.batchPut(handle, groupId, kv[0], kv[1])));
    }

    /** @see #batchPut(int, List, List) */
    public CompletableFuture<WriteResult> batchPutAsync(int groupId, List<byte[]> keys, List<byte[]> values) {
        byte[][] k = keys(keys);
        byte[][] v = values(values);
        return async(Codec::write, t -> Native.batchPutAsync(handle, t, groupId, k, v));
    }

    /** @see #batchPut(int, Map) */
    public CompletableFuture<WriteResult> batchPutAsync(int groupId, Map<String, byte[]> entries) {
        byte[][][] kv = entries(entries);
        return async(Codec::write, t -> Native.batchPutAsync(handle, t, groupId, kv[0], kv[1]));
    }

    private static byte[][] values(List<byte[]> values) {
        Objects.requireNonNull(values, "values");
        byte[][] out = new byte[values.size()][];
        for (int i = 0; i < out.length; i++) {
            out[i] = Objects.requireNonNull(values.get(i), "value");
        }
        return out;
    }

    private static byte[][][] entries(Map<String, byte[]> entries) {
        Objects.requireNonNull(entries, "entries");
        byte[][] k = new byte[entries.size()][];
        byte[][] v = new byte[entries.size()][];
        int i = 0;
        for (Map.Entry<String, byte[]> e : entries.entrySet()) {
            k[i] = key(e.getKey());
            v[i] = value(e.getValue());
            i++;
        }
        return new byte[][][] {k, v};
    }

    // ---- batchGet

    /**
     * Reads several keys.
     *
     * @param groupId the raft group
     * @param keys the keys
     * @return one node per key in order, null for a key that does not exist
     */
    public List<KvNode> batchGet(int groupId, List<byte[]> keys) {
        return Codec.batchGet(Codec.reply(Native.batchGet(handle, groupId, keys(keys))));
    }

    /** @see #batchGet(int, List) */
    public List<KvNode> batchGet(int groupId, String... keys) {
        return Codec.batchGet(Codec.reply(Native.batchGet(handle, groupId, keys(keys))));
    }

    /** @see #batchGet(int, List) */
    public CompletableFuture<List<KvNode>> batchGetAsync(int groupId, List<byte[]> keys) {
        byte[][] k = keys(keys);
        return async(Codec::batchGet, t -> Native.batchGetAsync(handle, t, groupId, k));
    }

    /** @see #batchGet(int, List) */
    public CompletableFuture<List<KvNode>> batchGetAsync(int groupId, String... keys) {
        byte[][] k = keys(keys);
        return async(Codec::batchGet, t -> Native.batchGetAsync(handle, t, groupId, k));
    }

    // ---- batchRemove

    /**
     * Removes several keys in one raft entry.
     *
     * @param groupId the raft group
     * @param keys the keys
     * @return one code per key in {@link WriteResult#codes()} (0: done)
     */
    public WriteResult batchRemove(int groupId, List<byte[]> keys) {
        return Codec.write(Codec.reply(Native.batchRemove(handle, groupId, keys(keys))));
    }

    /** @see #batchRemove(int, List) */
    public WriteResult batchRemove(int groupId, String... keys) {
        return Codec.write(Codec.reply(Native.batchRemove(handle, groupId, keys(keys))));
    }

    /** @see #batchRemove(int, List) */
    public CompletableFuture<WriteResult> batchRemoveAsync(int groupId, List<byte[]> keys) {
        byte[][] k = keys(keys);
        return async(Codec::write, t -> Native.batchRemoveAsync(handle, t, groupId, k));
    }

    /** @see #batchRemove(int, List) */
    public CompletableFuture<WriteResult> batchRemoveAsync(int groupId, String... keys) {
        byte[][] k = keys(keys);
        return async(Codec::write, t -> Native.batchRemoveAsync(handle, t, groupId, k));
    }

    // ---- compareAndSet

    /**
     * Sets {@code newValue} if the current value is {@code expectValue}.
     *
     * @param groupId the raft group
     * @param key the key
     * @param expectValue the value expected now; null or empty: the key must not exist
     * @param newValue the value to set; null or empty: remove the key
     * @return the raft index
     * @throws CasMismatchException when the current value differs
     */
    public WriteResult compareAndSet(int groupId, byte[] key, byte[] expectValue, byte[] newValue) {
        return Codec.write(Codec.reply(Native.compareAndSet(
                handle, groupId, key(key), orEmpty(expectValue), orEmpty(newValue))));
    }

    /** @see #compareAndSet(int, byte[], byte[], byte[]) */
    public WriteResult compareAndSet(int groupId, String key, byte[] expectValue, byte[] newValue) {
        return compareAndSet(groupId, key(key), expectValue, newValue);
    }

    /** @see #compareAndSet(int, byte[], byte[], byte[]) */
    public CompletableFuture<WriteResult> compareAndSetAsync(
            int groupId, byte[] key, byte[] expectValue, byte[] newValue) {
        byte[] k = key(key);
        byte[] e = orEmpty(expectValue);
        byte[] v = orEmpty(newValue);
        return async(Codec::write, t -> Native.compareAndSetAsync(handle, t, groupId, k, e, v));
    }

    /** @see #compareAndSet(int, byte[], byte[], byte[]) */
    public CompletableFuture<WriteResult> compareAndSetAsync(
            int groupId, String key, byte[] expectValue, byte[] newValue) {
        return compareAndSetAsync(groupId, key(key), expectValue, newValue);
    }

    private static byte[] orEmpty(byte[] b) {
        return b == null ? EMPTY : b;
    }

    // ---- temporary nodes

    /**
     * Creates or updates a temporary value owned by this client, removed {@code ttlMillis}
     * after this write unless re-armed with {@link #updateTtl}.
     *
     * @param groupId the raft group
     * @param key the key
     * @param value the value
     * @param ttlMillis time to live in milliseconds (1 to {@link #MAX_TTL_MILLIS})
     * @return the new expiry deadline in {@link WriteResult#deadlineMillis()}
     */
    public WriteResult putTemp(int groupId, byte[] key, byte[] value, long ttlMillis) {
        return Codec.write(Codec.reply(Native.putTemp(handle, groupId, key(key), value(value), ttlMillis)));
    }

    /** @see #putTemp(int, byte[], byte[], long) */
    public WriteResult putTemp(int groupId, String key, byte[] value, long ttlMillis) {
        return putTemp(groupId, key(key), value, ttlMillis);
    }

    /** @see #putTemp(int, byte[], byte[], long) */
    public CompletableFuture<WriteResult> putTempAsync(int groupId, byte[] key, byte[] value, long ttlMillis) {
        byte[] k = key(key);
        byte[] v = value(value);
        return async(Codec::write, t -> Native.putTempAsync(handle, t, groupId, k, v, ttlMillis));
    }

    /** @see #putTemp(int, byte[], byte[], long) */
    public CompletableFuture<WriteResult> putTempAsync(int groupId, String key, byte[] value, long ttlMillis) {
        return putTempAsync(groupId, key(key), value, ttlMillis);
    }

    /**
     * Creates (or re-arms) a temporary directory owned by this client; its whole subtree is
     * removed when its TTL passes.
     *
     * @param groupId the raft group
     * @param key the directory's key
     * @param ttlMillis time to live in milliseconds
     * @return the new expiry deadline in {@link WriteResult#deadlineMillis()}
     */
    public WriteResult makeTempDir(int groupId, byte[] key, long ttlMillis) {
        return Codec.write(Codec.reply(Native.makeTempDir(handle, groupId, key(key), ttlMillis)));
    }

    /** @see #makeTempDir(int, byte[], long) */
    public WriteResult makeTempDir(int groupId, String key, long ttlMillis) {
        return makeTempDir(groupId, key(key), ttlMillis);
    }

    /** @see #makeTempDir(int, byte[], long) */
    public CompletableFuture<WriteResult> makeTempDirAsync(int groupId, byte[] key, long ttlMillis) {
        byte[] k = key(key);
        return async(Codec::write, t -> Native.makeTempDirAsync(handle, t, groupId, k, ttlMillis));
    }

    /** @see #makeTempDir(int, byte[], long) */
    public CompletableFuture<WriteResult> makeTempDirAsync(int groupId, String key, long ttlMillis) {
        return makeTempDirAsync(groupId, key(key), ttlMillis);
    }

    /**
     * Re-arms a temporary node's TTL from now (owner only).
     *
     * @param groupId the raft group
     * @param key the key
     * @param ttlMillis time to live in milliseconds, from now
     * @return the new expiry deadline in {@link WriteResult#deadlineMillis()}
     * @throws NotOwnerException when another client owns the node
     * @throws NotTempNodeException when the node is not temporary
     */
    public WriteResult updateTtl(int groupId, byte[] key, long ttlMillis) {
        return Codec.write(Codec.reply(Native.updateTtl(handle, groupId, key(key), ttlMillis)));
    }

    /** @see #updateTtl(int, byte[], long) */
    public WriteResult updateTtl(int groupId, String key, long ttlMillis) {
        return updateTtl(groupId, key(key), ttlMillis);
    }

    /** @see #updateTtl(int, byte[], long) */
    public CompletableFuture<WriteResult> updateTtlAsync(int groupId, byte[] key, long ttlMillis) {
        byte[] k = key(key);
        return async(Codec::write, t -> Native.updateTtlAsync(handle, t, groupId, k, ttlMillis));
    }

    /** @see #updateTtl(int, byte[], long) */
    public CompletableFuture<WriteResult> updateTtlAsync(int groupId, String key, long ttlMillis) {
        return updateTtlAsync(groupId, key(key), ttlMillis);
    }

    @Override
    public String toString() {
        return "KvClient[clientId=" + clientId() + "]";
    }

    // ---- watches

    private static byte[][] keyList(List<String> keys) {
        Objects.requireNonNull(keys, "keys");
        return keys(keys.toArray(new String[0]));
    }

    /**
     * Watches keys of a group for changes from now on: each key covers itself and every key
     * under it (the empty key: the whole tree). Blocks until a server accepted the watch (at
     * most the client's timeout). Read it with {@link KvWatch#poll}.
     *
     * @param groupId the raft group
     * @param keys the keys or directories to watch (at least one)
     * @return the watch; close it to unregister
     */
    public KvWatch watch(int groupId, String... keys) {
        return KvWatch.open(runtime, handle, groupId, keys(keys), 0);
    }

    /**
     * Like {@link #watch(int, String...)}, seeing changes with a raft index above
     * {@code fromIndex} (0: from the serving node's applied index). Resuming from
     * {@link KvWatch#lastIndex()} or from the index of the last event handled sees each later
     * change exactly once; a {@code fromIndex} below the server's history gives a compacted
     * event first.
     *
     * @param groupId the raft group
     * @param keys the keys or directories to watch (at least one)
     * @param fromIndex the raft index after which events are wanted
     * @return the watch; close it to unregister
     */
    public KvWatch watch(int groupId, List<String> keys, long fromIndex) {
        return KvWatch.open(runtime, handle, groupId, keyList(keys), fromIndex);
    }

    /**
     * A watch whose events go to {@code listener} on {@code executor}, in raft index order and
     * one at a time, never on an IO thread. Costs one daemon thread until closed.
     *
     * @param groupId the raft group
     * @param listener receives the events
     * @param executor where the listener runs
     * @param keys the keys or directories to watch (at least one)
     * @return the watch; close it to stop delivery and unregister
     */
    public KvWatch watch(int groupId, WatchListener listener, Executor executor, String... keys) {
        return KvWatch.open(runtime, handle, groupId, keys(keys), 0, listener, executor);
    }

    /**
     * {@link #watch(int, WatchListener, Executor, String...)} from {@code fromIndex}.
     *
     * @param groupId the raft group
     * @param keys the keys or directories to watch (at least one)
     * @param fromIndex the raft index after which events are wanted
     * @param listener receives the events
     * @param executor where the listener runs
     * @return the watch; close it to stop delivery and unregister
     */
    public KvWatch watch(int groupId, List<String> keys, long fromIndex, WatchListener listener, Executor executor) {
        return KvWatch.open(runtime, handle, groupId, keyList(keys), fromIndex, listener, executor);
    }

    // ---- locks

    /**
     * A handle on the distributed lock at {@code key}; nothing is sent until
     * {@link DistributedLock#tryLock}. The lock is held through this client's session.
     *
     * @param groupId the raft group
     * @param key the lock's key (its parent directory must exist when locking)
     * @return the lock; close it to release and free it
     * @throws InvalidKeyException when the key breaks the key rules
     */
    public DistributedLock createLock(int groupId, String key) {
        long h = Codec.handle(Native.lockNew(handle, groupId, key(key)));
        return new DistributedLock(groupId, key, h, runtime, executor);
    }

    /**
     * A lock that keeps itself acquired: it queues for the lock, renews the lease every third of
     * {@code leaseMillis}, and calls {@code listener} on this client's executor when the lock is
     * acquired and lost (then tries again). Close it to stop and release.
     *
     * @param groupId the raft group
     * @param key the lock's key
     * @param leaseMillis the lease of each hold (3 to {@link #MAX_TTL_MILLIS})
     * @param listener told of acquisition and loss
     * @return the running lock
     */
    public AutoRenewalLock createAutoRenewalLock(
            int groupId, String key, long leaseMillis, AutoRenewalLockListener listener) {
        return createAutoRenewalLock(groupId, key, leaseMillis, listener, executor);
    }

    /**
     * {@link #createAutoRenewalLock(int, String, long, AutoRenewalLockListener)} with listener
     * calls on {@code listenerExecutor}.
     *
     * @param groupId the raft group
     * @param key the lock's key
     * @param leaseMillis the lease of each hold (3 to {@link #MAX_TTL_MILLIS})
     * @param listener told of acquisition and loss
     * @param listenerExecutor where the listener runs
     * @return the running lock
     */
    public AutoRenewalLock createAutoRenewalLock(
            int groupId, String key, long leaseMillis, AutoRenewalLockListener listener, Executor listenerExecutor) {
        Objects.requireNonNull(listener, "listener");
        Objects.requireNonNull(listenerExecutor, "listenerExecutor");
        Args.range("leaseMillis", leaseMillis, 3, MAX_TTL_MILLIS);
        return new AutoRenewalLock(createLock(groupId, key), leaseMillis, listener, listenerExecutor);
    }
}
