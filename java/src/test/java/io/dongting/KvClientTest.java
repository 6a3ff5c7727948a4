package io.dongting;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CompletionException;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

/** Every operation and error mapping against an embedded 3-node cluster. */
class KvClientTest extends ClusterTest {

    @BeforeAll
    static void start() {
        startCluster(10_000);
    }

    static byte[] b(String s) {
        return s.getBytes(StandardCharsets.UTF_8);
    }

    static DongtingException cause(Throwable t) {
        Throwable c = t instanceof CompletionException ? t.getCause() : t;
        return assertInstanceOf(DongtingException.class, c);
    }

    @Test
    void putGetRemoveWithStringAndByteKeys() {
        kv.mkdir(G, "basic");
        WriteResult w = kv.put(G, "basic.k", "v1");
        assertTrue(w.created());
        assertTrue(w.index() > 0);
        assertFalse(kv.put(G, b("basic.k"), b("v2")).created());
        KvNode n = kv.get(G, "basic.k");
        assertEquals("v2", n.valueString());
        assertEquals("basic.k", n.keyString());
        assertEquals("k", n.name());
        assertTrue(n.isValue());
        assertTrue(n.updateIndex() >= n.createIndex());
        assertArrayEquals(b("v2"), kv.get(G, b("basic.k")).value());
        assertNull(kv.get(G, "basic.missing"));
        kv.remove(G, "basic.k");
        assertNull(kv.get(G, "basic.k"));
        assertThrows(NotFoundException.class, () -> kv.remove(G, b("basic.k")));
    }

    @Test
    void directoriesAndList() {
        assertTrue(kv.mkdir(G, "dirs").created());
        assertFalse(kv.mkdir(G, b("dirs")).created());
        assertTrue(kv.get(G, "dirs").isDir());
        kv.put(G, "dirs.b", "2");
        kv.put(G, "dirs.a", "1");
        kv.mkdir(G, "dirs.c");
        List<KvNode> children = kv.list(G, "dirs");
        assertEquals(List.of("a", "b", "c"), children.stream().map(KvNode::name).toList());
        assertTrue(kv.list(G, b("dirs.c")).isEmpty());
        assertTrue(kv.list(G, "").stream().anyMatch(x -> x.keyString().equals("dirs")));
        DirNotEmptyException e = assertThrows(DirNotEmptyException.class, () -> kv.remove(G, "dirs"));
        assertEquals("DIR_NOT_EMPTY", e.codeName());
        assertEquals(1010, e.code());
        assertFalse(e.retryable());
        assertInstanceOf(KvException.class, e);
        assertThrows(IsDirException.class, () -> kv.put(G, "dirs", "x"));
        assertThrows(NotDirException.class, () -> kv.list(G, "dirs.a"));
        assertThrows(ParentNotDirException.class, () -> kv.put(G, "dirs.a.x", "v"));
    }

    @Test
    void errorMapping() {
        kv.mkdir(G, "errs");
        assertEquals("INVALID_KEY", assertThrows(InvalidKeyException.class, () -> kv.put(G, "errs..k", "v")).codeName());
        assertThrows(InvalidKeyException.class, () -> kv.get(G, ".errs"));
        assertThrows(InvalidKeyException.class, () -> kv.get(G, new byte[] {(byte) 0xff}));
        assertThrows(InvalidKeyException.class, () -> kv.put(G, "errs." + "x".repeat(9000), "v"));
        assertEquals("INVALID_VALUE", assertThrows(InvalidValueException.class, () -> kv.put(G, "errs.k", new byte[0])).codeName());
        InvalidValueException big = assertThrows(InvalidValueException.class, () -> kv.put(G, "errs.k", new byte[1024 * 1024 + 1]));
        assertEquals("VALUE_TOO_LARGE", big.codeName());
        assertNull(kv.get(G, "errs.k"));
        ParentNotFoundException p = assertThrows(ParentNotFoundException.class, () -> kv.put(G, "errs.nodir.k", "v"));
        assertEquals(1009, p.code());
        assertThrows(ParentNotFoundException.class, () -> kv.mkdir(G, "errs.nodir.sub"));
        assertThrows(InvalidTtlException.class, () -> kv.putTemp(G, "errs.t", b("v"), 0));
        // A negative TTL is no TTL at all: an invalid argument, not DtKV's INVALID_TTL.
        assertThrows(InvalidArgumentException.class, () -> kv.putTemp(G, "errs.t", b("v"), -5));
        assertThrows(NullPointerException.class, () -> kv.put(G, (String) null, "v"));
        assertEquals("UNKNOWN", DongtingException.codeName(-7));
        assertInstanceOf(LockException.class, DongtingException.fromCode(1027, "x", false, null));
        assertEquals("IS_LOCK", DongtingException.fromCode(1027, "x", false, null).codeName());
        assertInstanceOf(HistoryCompactedException.class, DongtingException.fromCode(1104, "x", false, null));
        assertInstanceOf(UnknownOutcomeException.class, DongtingException.fromCode(911, "x", false, null));
        assertEquals("UNKNOWN_OUTCOME", DongtingException.fromCode(911, "x", false, null).codeName());
        assertEquals(KvException.class, DongtingException.fromCode(1199, "x", false, null).getClass());
        assertEquals(DongtingException.class, DongtingException.fromCode(42, "x", false, null).getClass());
        assertEquals("CAS_MISMATCH", DongtingException.codeName(1014));
        assertTrue(DongtingException.fromCode(7, "x", true, "127.0.0.1:1") instanceof NotLeaderException nl
                && nl.leaderHint().orElseThrow().equals("127.0.0.1:1") && nl.retryable());
    }

    @Test
    void batches() {
        kv.mkdir(G, "batch");
        WriteResult w = kv.batchPut(G, List.of(b("batch.a"), b("batch.b"), b("batch.c")), List.of(b("1"), b("2"), b("3")));
        assertArrayEquals(new int[] {0, 0, 0}, w.codes());
        List<KvNode> got = kv.batchGet(G, "batch.a", "batch.b", "batch.zz", "batch.c");
        assertEquals("1", got.get(0).valueString());
        assertEquals("2", got.get(1).valueString());
        assertNull(got.get(2));
        assertEquals("3", got.get(3).valueString());
        assertArrayEquals(new int[] {0, 1002, 0}, kv.batchRemove(G, "batch.a", "batch.zz", "batch.c").codes());
        List<KvNode> after = kv.batchGet(G, List.of(b("batch.a"), b("batch.b")));
        assertNull(after.get(0));
        assertEquals("2", after.get(1).valueString());
        Map<String, byte[]> m = new LinkedHashMap<>();
        m.put("batch.x", b("1"));
        m.put("batch.nodir.y", b("2"));
        assertArrayEquals(new int[] {0, 1009}, kv.batchPut(G, m).codes());
        assertArrayEquals(new int[] {0}, kv.batchRemove(G, List.of(b("batch.x"))).codes());
        assertThrows(InvalidKeyException.class, () -> kv.batchPut(G, List.of(b("batch.ok"), b("batch..bad")), List.of(b("1"), b("2"))));
        assertNull(kv.get(G, "batch.ok"));
        assertThrows(InvalidArgumentException.class, () -> kv.batchPut(G, List.of(b("batch.q")), List.of()));
    }

    @Test
    void compareAndSet() {
        kv.mkdir(G, "cas");
        kv.compareAndSet(G, "cas.k", null, b("v1"));
        assertEquals("v1", kv.get(G, "cas.k").valueString());
        CasMismatchException e = assertThrows(CasMismatchException.class, () -> kv.compareAndSet(G, "cas.k", null, b("v2")));
        assertEquals("CAS_MISMATCH", e.codeName());
        assertThrows(CasMismatchException.class, () -> kv.compareAndSet(G, b("cas.k"), b("wrong"), b("v2")));
        kv.compareAndSet(G, b("cas.k"), b("v1"), b("v2"));
        assertEquals("v2", kv.get(G, "cas.k").valueString());
        kv.compareAndSet(G, "cas.k", b("v2"), new byte[0]);
        assertNull(kv.get(G, "cas.k"));
    }

    @Test
    void temporaryNodesAndOwnership() throws Exception {
        kv.mkdir(G, "temp");
        try (KvClient other = cluster.client()) {
            assertTrue(kv.clientId() != other.clientId());
            WriteResult w = kv.putTemp(G, "temp.t", b("v"), 60_000);
            assertTrue(w.deadlineMillis() > 0);
            KvNode n = other.get(G, "temp.t");
            assertEquals("v", n.valueString());
            assertEquals(kv.clientId(), n.ttlOwner());
            assertTrue(n.ttlDeadlineMillis() > 0);
            assertTrue(kv.updateTtl(G, "temp.t", 60_000).deadlineMillis() >= w.deadlineMillis());
            NotOwnerException no = assertThrows(NotOwnerException.class, () -> other.updateTtl(G, "temp.t", 60_000));
            assertEquals("NOT_OWNER", no.codeName());
            kv.put(G, "temp.plain", "v");
            assertThrows(NotTempNodeException.class, () -> kv.updateTtl(G, b("temp.plain"), 1000));
            assertThrows(NotFoundException.class, () -> kv.updateTtl(G, "temp.none", 1000));
            kv.putTemp(G, b("temp.short"), b("v"), 300);
            kv.makeTempDir(G, "temp.td", 300);
            kv.put(G, "temp.td.child", "v");
            long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(10);
            while ((kv.get(G, "temp.short") != null || kv.get(G, "temp.td") != null) && System.nanoTime() < deadline) {
                Thread.sleep(100);
            }
            assertNull(kv.get(G, "temp.short"));
            assertNull(kv.get(G, "temp.td"));
            assertNull(kv.get(G, "temp.td.child"));
            kv.makeTempDir(G, b("temp.td2"), 60_000);
            assertTrue(kv.get(G, "temp.td2").isDir());
        }
    }

    @Test
    void everyAsyncOperation() throws Exception {
        kv.mkdirAsync(G, "async").get();
        assertTrue(kv.putAsync(G, "async.k", "v").get().created());
        kv.putAsync(G, b("async.k2"), b("v2")).get();
        kv.putAsync(G, "async.k3", b("v3")).get();
        assertEquals("v", kv.getAsync(G, "async.k").get().valueString());
        assertNull(kv.getAsync(G, b("async.none")).get());
        assertEquals(3, kv.listAsync(G, "async").get().size());
        assertEquals(3, kv.listAsync(G, b("async")).get().size());
        kv.removeAsync(G, "async.k3").get();
        kv.removeAsync(G, b("async.k2")).get();
        kv.mkdirAsync(G, b("async.d")).get();
        assertArrayEquals(new int[] {0, 0},
                kv.batchPutAsync(G, List.of(b("async.a"), b("async.b")), List.of(b("1"), b("2"))).get().codes());
        assertArrayEquals(new int[] {0}, kv.batchPutAsync(G, Map.of("async.c", b("3"))).get().codes());
        assertEquals(Arrays.asList("1", null),
                kv.batchGetAsync(G, "async.a", "async.zz").get().stream().map(n -> n == null ? null : n.valueString()).toList());
        assertEquals(2, kv.batchGetAsync(G, List.of(b("async.a"), b("async.b"))).get().size());
        assertArrayEquals(new int[] {0}, kv.batchRemoveAsync(G, "async.a").get().codes());
        assertArrayEquals(new int[] {0}, kv.batchRemoveAsync(G, List.of(b("async.b"))).get().codes());
        kv.compareAndSetAsync(G, "async.cas", null, b("1")).get();
        kv.compareAndSetAsync(G, b("async.cas"), b("1"), b("2")).get();
        assertTrue(kv.putTempAsync(G, "async.t", b("v"), 60_000).get().deadlineMillis() > 0);
        kv.putTempAsync(G, b("async.t2"), b("v"), 60_000).get();
        kv.updateTtlAsync(G, "async.t", 60_000).get();
        kv.updateTtlAsync(G, b("async.t2"), 60_000).get();
        kv.makeTempDirAsync(G, "async.td", 60_000).get();
        kv.makeTempDirAsync(G, b("async.td2"), 60_000).get();

        CompletableFuture<WriteResult> bad = kv.removeAsync(G, "async.none");
        assertInstanceOf(NotFoundException.class, cause(assertThrows(CompletionException.class, bad::join)));
        CompletableFuture<WriteResult> cas = kv.compareAndSetAsync(G, "async.cas", b("9"), b("3"));
        assertInstanceOf(CasMismatchException.class, cause(assertThrows(CompletionException.class, cas::join)));
        CompletableFuture<KvNode> badKey = kv.getAsync(G, "async..x");
        assertInstanceOf(InvalidKeyException.class, cause(assertThrows(CompletionException.class, badKey::join)));
    }

    @Test
    void thousandConcurrentAsyncPutsCompleteOffTheIoThreads() throws Exception {
        kv.mkdir(G, "many");
        List<CompletableFuture<String>> fs = new ArrayList<>();
        for (int i = 0; i < 1000; i++) {
            fs.add(kv.putAsync(G, "many.k" + i, "v" + i).thenApply(w -> Thread.currentThread().getName()));
        }
        CompletableFuture.allOf(fs.toArray(new CompletableFuture<?>[0])).get(60, TimeUnit.SECONDS);
        // A put that completed before thenApply was attached runs it on this thread; every
        // other completion runs on the executor.
        String self = Thread.currentThread().getName();
        int onPool = 0;
        for (CompletableFuture<String> f : fs) {
            String thread = f.get();
            assertTrue(thread.startsWith("ForkJoinPool") || thread.equals(self), thread);
            onPool += thread.startsWith("ForkJoinPool") ? 1 : 0;
        }
        assertTrue(onPool > 0, "no completion ran on the executor");
        assertEquals(1000, kv.list(G, "many").size());
        assertEquals("v999", kv.get(G, "many.k999").valueString());
    }

    @Test
    void completionsRunOnAUserExecutor() throws Exception {
        ExecutorService ex = Executors.newSingleThreadExecutor(r -> new Thread(r, "user-executor"));
        try (KvClient c = cluster.clientBuilder().executor(ex).build()) {
            c.mkdir(G, "exec");
            String thread = c.putAsync(G, "exec.k", "v").thenApply(w -> Thread.currentThread().getName()).get();
            assertEquals("user-executor", thread);
            Throwable t = c.getAsync(G, "exec..bad").handle((v, e) -> e).get();
            assertInstanceOf(InvalidKeyException.class, t);
        } finally {
            ex.shutdown();
        }
    }

    @Test
    void unreachableServerTimesOutOrFailsToConnect() {
        try (KvClient u = KvClient.builder("127.0.0.1:1").timeoutMillis(500).build()) {
            long t0 = System.nanoTime();
            DongtingException e = assertThrows(DongtingException.class, () -> u.put(G, "k", "v"));
            assertTrue(e instanceof DtTimeoutException || e instanceof NetworkException, e.toString());
            assertTrue(List.of("TIMEOUT", "NETWORK_ERROR").contains(e.codeName()));
            assertTrue(System.nanoTime() - t0 < TimeUnit.SECONDS.toNanos(5));
            Throwable a = u.getAsync(G, "k").handle((v, x) -> x).join();
            assertTrue(a instanceof DtTimeoutException || a instanceof NetworkException, String.valueOf(a));
        }
    }

    @Test
    void closedClientFailsWithClosed() {
        KvClient c = cluster.client();
        c.close();
        c.close();
        assertThrows(ClosedException.class, () -> c.get(G, "x"));
        assertInstanceOf(ClosedException.class, cause(assertThrows(CompletionException.class, () -> c.getAsync(G, "x").join())));
    }

    @Test
    void badArgumentsAreRefusedBeforeSending() {
        assertThrows(InvalidArgumentException.class, () -> new KvClient("not an address"));
        assertThrows(InvalidArgumentException.class, () -> new KvClient("127.0.0.1:5001", 0));
        assertThrows(InvalidArgumentException.class, () -> new KvClient("127.0.0.1:5001", 100_000_000_000L));
        assertThrows(InvalidArgumentException.class, () -> kv.get(-1, "x"));
        assertNotNull(kv.toString());
    }
}
