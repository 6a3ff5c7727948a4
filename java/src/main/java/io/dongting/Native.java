package io.dongting;

/**
 * The native methods of {@code libdongting_jvm} (bindings/jvm). Handles are numbers into the
 * library's registries of live objects; a closed or unknown handle gives a CLOSED error, never
 * a crash. Every call that can fail returns its result encoded as {@link Codec} reads it;
 * asynchronous calls return null once started (the result arrives through
 * {@link #awaitCompletions}) or the encoded error. Strings cross as UTF-8.
 */
final class Native {
    static {
        NativeLoader.load();
    }

    private Native() {}

    static native byte[] runtimeNew(int workerThreads);

    static native byte[] runtimeShutdown(long rt, long timeoutMillis);

    static native void runtimeFree(long rt);

    static native byte[] awaitCompletions(long rt);

    static native long runtimePending(long rt);

    static native long liveHandles();

    static native byte[] clientNew(long rt, byte[] servers, long timeoutMillis);

    static native long clientId(long client);

    static native byte[] clientClose(long client);

    static native byte[] put(long c, int group, byte[] key, byte[] value);

    static native byte[] putAsync(long c, long token, int group, byte[] key, byte[] value);

    static native byte[] get(long c, int group, byte[] key);

    static native byte[] getAsync(long c, long token, int group, byte[] key);

    static native byte[] remove(long c, int group, byte[] key);

    static native byte[] removeAsync(long c, long token, int group, byte[] key);

    static native byte[] mkdir(long c, int group, byte[] key);

    static native byte[] mkdirAsync(long c, long token, int group, byte[] key);

    static native byte[] list(long c, int group, byte[] key);

    static native byte[] listAsync(long c, long token, int group, byte[] key);

    static native byte[] listPage(long c, int group, byte[] key, byte[] startAfter, int limit);

    static native byte[] listPageAsync(long c, long token, int group, byte[] key, byte[] startAfter, int limit);

    static native byte[] compareAndSet(long c, int group, byte[] key, byte[] expect, byte[] value);

    static native byte[] compareAndSetAsync(long c, long token, int group, byte[] key, byte[] expect, byte[] value);

    static native byte[] putTemp(long c, int group, byte[] key, byte[] value, long ttlMillis);

    static native byte[] putTempAsync(long c, long token, int group, byte[] key, byte[] value, long ttlMillis);

    static native byte[] makeTempDir(long c, int group, byte[] key, long ttlMillis);

    static native byte[] makeTempDirAsync(long c, long token, int group, byte[] key, long ttlMillis);

    static native byte[] updateTtl(long c, int group, byte[] key, long ttlMillis);

    static native byte[] updateTtlAsync(long c, long token, int group, byte[] key, long ttlMillis);

    static native byte[] batchPut(long c, int group, byte[][] keys, byte[][] values);

    static native byte[] batchPutAsync(long c, long token, int group, byte[][] keys, byte[][] values);

    static native byte[] batchGet(long c, int group, byte[][] keys);

    static native byte[] batchGetAsync(long c, long token, int group, byte[][] keys);

    static native byte[] batchRemove(long c, int group, byte[][] keys);

    static native byte[] batchRemoveAsync(long c, long token, int group, byte[][] keys);

    static native byte[] watchNew(long c, int group, byte[][] keys, long fromIndex);

    static native byte[] watchNextAsync(long watch, long token, long timeoutMillis);

    static native byte[] watchLastIndex(long watch);

    static native byte[] watchClose(long watch);

    static native byte[] lockNew(long c, int group, byte[] key);

    static native byte[] lockTryLock(long lock, long leaseMillis, long waitTimeoutMillis);

    static native byte[] lockTryLockAsync(long lock, long token, long leaseMillis, long waitTimeoutMillis);

    static native byte[] lockUnlock(long lock);

    static native byte[] lockUnlockAsync(long lock, long token);

    static native byte[] lockUpdateLease(long lock, long leaseMillis);

    static native byte[] lockUpdateLeaseAsync(long lock, long token, long leaseMillis);

    static native byte[] lockState(long lock);

    static native byte[] lockClose(long lock);

    static native byte[] serverStart(long rt, byte[] config, boolean isPath);

    static native byte[] serverInfo(long server);

    static native byte[] serverStatus(long server);

    static native byte[] serverMetrics(long server);

    static native byte[] serverStop(long server, long graceMillis);

    static native void serverFree(long server);

    static native byte[] localClusterConfigs(int nodes, int[] groups, byte[] dataDir);

    static native byte[] codeName(int code);

    /** Every error code as UTF-8 lines {@code NAME=code}, in code order. */
    static native byte[] errorCodes();

    static native byte[] version();

    /** The names of the KV operations of the SDK's table (snake_case), UTF-8, one per line. */
    static native byte[] kvOpList();

    /** The names of the KV operations of the SDK's table, snake_case, in table order. */
    static String[] kvOpNames() {
        return new String(kvOpList(), java.nio.charset.StandardCharsets.UTF_8).split("\n");
    }
}
