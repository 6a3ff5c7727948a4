package io.dongting;

/**
 * Told when an {@link AutoRenewalLock} is acquired and lost. Calls run on the lock's executor,
 * never on an IO thread, one at a time and in the order the changes happened.
 */
public interface AutoRenewalLockListener {
    /**
     * The lock was acquired.
     *
     * @param token the fencing token of this hold (larger than every earlier holder's)
     */
    void onAcquired(long token);

    /**
     * The lock is no longer held (a renewal failed until the lease ran out by this client's
     * count, or the server gave it to another client): stop using the resource. The lock keeps
     * trying to acquire again.
     */
    void onLost();
}
