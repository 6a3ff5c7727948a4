package io.dongting;

import java.lang.ref.Cleaner;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.Executor;

/**
 * A distributed lock on one key of a raft group, held through the session of the
 * {@link KvClient} that created it ({@link KvClient#createLock(int, String)}); the names follow
 * the original Java Dongting {@code DistributedLock}.
 *
 * <p>A hold has a lease: unless renewed with {@link #updateLease(long)} the server releases the
 * lock when the lease ends and promotes the first waiter. Each acquisition gets a fencing token
 * that is larger than every earlier token of the key: pass it to the resources the lock guards so
 * they can refuse a holder whose lease ran out.
 *
 * <p>{@link #tryLock(long, long)} returns the token, or {@code 0} when the wait ended without
 * the lock (tokens are always positive). Blocking forms block the calling thread; asynchronous
 * forms complete their futures on the client's executor. Errors are {@link DongtingException}s:
 * {@link LockException} when the key breaks a lock rule (a value or directory is there, too many
 * waiters), {@link NotOwnerException} when renewing a lock not held.
 *
 * <p>Thread-safe. {@link #close()} releases the lock if held and frees the handle; a lock that
 * becomes unreachable without being closed is closed by a cleaner.
 */
public final class DistributedLock implements AutoCloseable {
    private static final Cleaner CLEANER = Cleaner.create();

    private final int groupId;
    private final String key;
    private final long handle;
    private final DongtingRuntime runtime;
    private final Executor executor;
    private final Cleaner.Cleanable cleanable;

    DistributedLock(int groupId, String key, long handle, DongtingRuntime runtime, Executor executor) {
        this.groupId = groupId;
        this.key = key;
        this.handle = handle;
        this.runtime = runtime;
        this.executor = executor;
        // A failed release is not reported: the server releases the lock when its lease ends.
        this.cleanable = CLEANER.register(this, () -> Native.lockClose(handle));
    }

    private static void checkLease(long leaseMillis) {
        Args.range("leaseMillis", leaseMillis, 1, KvClient.MAX_TTL_MILLIS);
    }

    private static void checkWait(long waitTimeoutMillis) {
        Args.range("waitTimeoutMillis", waitTimeoutMillis, 0, KvClient.MAX_TTL_MILLIS);
    }

    /** @return the raft group of the lock */
    public int groupId() {
        return groupId;
    }

    /** @return the key of the lock */
    public String key() {
        return key;
    }

    /**
     * Acquires the lock with a lease of {@code leaseMillis}, queueing up to
     * {@code waitTimeoutMillis} behind the holder (0: do not wait). Blocks.
     *
     * @param leaseMillis the lease (1 to {@link KvClient#MAX_TTL_MILLIS})
     * @param waitTimeoutMillis how long to wait for the holder to release (0: not at all; at
     *     most {@link KvClient#MAX_TTL_MILLIS})
     * @return the fencing token (positive), or 0 when not acquired in time
     */
    public long tryLock(long leaseMillis, long waitTimeoutMillis) {
        checkLease(leaseMillis);
        checkWait(waitTimeoutMillis);
        return Codec.reply(Native.lockTryLock(handle, leaseMillis, waitTimeoutMillis)).token;
    }

    /**
     * @see #tryLock(long, long)
     * @param leaseMillis the lease
     * @param waitTimeoutMillis how long to wait (0: not at all)
     * @return a future of the fencing token, 0 when not acquired in time
     */
    public CompletableFuture<Long> tryLockAsync(long leaseMillis, long waitTimeoutMillis) {
        checkLease(leaseMillis);
        checkWait(waitTimeoutMillis);
        return runtime.submit(
                executor, r -> r.token, t -> Native.lockTryLockAsync(handle, t, leaseMillis, waitTimeoutMillis));
    }

    /**
     * Releases the lock, or leaves its queue; succeeds when this client neither holds nor waits
     * for it. The first waiter (of any client) is promoted. Blocks.
     */
    public void unlock() {
        Codec.reply(Native.lockUnlock(handle));
    }

    /**
     * @see #unlock()
     * @return a future completed once released
     */
    public CompletableFuture<Void> unlockAsync() {
        return runtime.submit(executor, r -> null, t -> Native.lockUnlockAsync(handle, t));
    }

    /**
     * Sets the lease to {@code leaseMillis} from now. Blocks.
     *
     * @param leaseMillis the new lease (1 to {@link KvClient#MAX_TTL_MILLIS})
     * @throws NotOwnerException when this client does not hold the lock
     */
    public void updateLease(long leaseMillis) {
        checkLease(leaseMillis);
        Codec.reply(Native.lockUpdateLease(handle, leaseMillis));
    }

    /**
     * @see #updateLease(long)
     * @param leaseMillis the new lease
     * @return a future completed once renewed
     */
    public CompletableFuture<Void> updateLeaseAsync(long leaseMillis) {
        checkLease(leaseMillis);
        return runtime.submit(executor, r -> null, t -> Native.lockUpdateLeaseAsync(handle, t, leaseMillis));
    }

    private Codec.Reader state() {
        Codec.Reader r = new Codec.Reader(Native.lockState(handle));
        DongtingException e = r.error();
        if (e != null) {
            throw e;
        }
        return r;
    }

    /**
     * Whether this client holds the lock by its own count: the lease is counted from when the
     * request that set it was sent, so the server's view ends no earlier. Local: sends nothing.
     *
     * @return true while held and the lease has not run out
     */
    public boolean isHeldByCurrentClient() {
        return state().bool();
    }

    /** @return milliseconds left of the lease by this client's count (0 when not held) */
    public long getLeaseRestMillis() {
        Codec.Reader r = state();
        r.bool();
        return r.i64();
    }

    /** @return the fencing token of the current hold, 0 when not held */
    public long token() {
        Codec.Reader r = state();
        r.bool();
        r.i64();
        return r.i64();
    }

    /**
     * Releases the lock if held or waited for (blocks up to the client's timeout) and frees the
     * handle: later calls fail with {@link ClosedException}. Idempotent. Never throws: should the
     * release fail (no server reachable), the server releases the lock when its lease ends; call
     * {@link #unlock()} first to learn the outcome.
     */
    @Override
    public void close() {
        cleanable.clean();
    }

    @Override
    public String toString() {
        return "DistributedLock[" + groupId + " " + key + "]";
    }
}
