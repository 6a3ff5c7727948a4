package io.dongting;

import java.util.concurrent.CompletableFuture;
import java.util.concurrent.Executor;
import java.util.concurrent.ScheduledExecutorService;
import java.util.concurrent.ScheduledFuture;
import java.util.concurrent.ScheduledThreadPoolExecutor;
import java.util.concurrent.TimeUnit;

/**
 * A distributed lock that keeps itself acquired (see
 * {@link KvClient#createAutoRenewalLock(int, String, long, AutoRenewalLockListener)}): it keeps
 * trying to acquire the lock, renews the lease every third of it, and tells its
 * {@link AutoRenewalLockListener} when the lock is acquired and lost.
 *
 * <p>Timing runs on one shared daemon thread ({@code dongting-lock-renewal}) that only starts
 * asynchronous calls and never blocks; listener calls run on the lock's executor. {@link #close()}
 * stops it and releases the lock.
 */
public final class AutoRenewalLock implements AutoCloseable {
    /** Pause before trying again after a failed acquisition or renewal, at most. */
    private static final long MAX_RETRY_MILLIS = 1_000;

    private static final ScheduledExecutorService TIMER = timer();

    private final DistributedLock lock;
    private final long leaseMillis;
    private final AutoRenewalLockListener listener;
    private final Executor executor;
    /** Listener calls chain on this, so they run one at a time and in order. */
    private CompletableFuture<Void> calls = CompletableFuture.completedFuture(null);
    private boolean held;
    private boolean closed;
    /** Set by {@link #close()} only: listener calls queued before it still run otherwise. */
    private boolean closedByUser;
    private ScheduledFuture<?> scheduled;

    private static ScheduledExecutorService timer() {
        ScheduledThreadPoolExecutor t = new ScheduledThreadPoolExecutor(1, r -> {
            Thread th = new Thread(r, "dongting-lock-renewal");
            th.setDaemon(true);
            return th;
        });
        t.setRemoveOnCancelPolicy(true);
        return t;
    }

    AutoRenewalLock(DistributedLock lock, long leaseMillis, AutoRenewalLockListener listener, Executor executor) {
        this.lock = lock;
        this.leaseMillis = leaseMillis;
        this.listener = listener;
        this.executor = executor;
        synchronized (this) {
            schedule(0, this::acquire);
        }
    }

    private long retryMillis() {
        return Math.max(1, Math.min(MAX_RETRY_MILLIS, leaseMillis / 3));
    }

    private void schedule(long delayMillis, Runnable step) {
        if (!closed) {
            scheduled = TIMER.schedule(step, delayMillis, TimeUnit.MILLISECONDS);
        }
    }

    private void notifyListener(Runnable call) {
        calls = calls.thenRunAsync(
                () -> {
                    synchronized (this) {
                        if (closedByUser) {
                            return;
                        }
                    }
                    call.run();
                },
                executor);
    }

    /** Queues at the server for up to one lease, then tries again. */
    private void acquire() {
        CompletableFuture<Long> f;
        synchronized (this) {
            if (closed) {
                return;
            }
            f = lock.tryLockAsync(leaseMillis, leaseMillis);
        }
        f.whenComplete((token, err) -> {
            synchronized (this) {
                if (closed) {
                    return;
                }
                if (err != null && endsForGood(err)) {
                    return;
                }
                if (err != null || token == null || token == 0) {
                    schedule(err != null ? retryMillis() : 0, this::acquire);
                    return;
                }
                held = true;
                long t = token;
                notifyListener(() -> listener.onAcquired(t));
                schedule(leaseMillis / 3, this::renew);
            }
        });
    }

    private void renew() {
        CompletableFuture<Void> f;
        synchronized (this) {
            if (closed) {
                return;
            }
            if (!lock.isHeldByCurrentClient()) {
                lost();
                return;
            }
            f = lock.updateLeaseAsync(leaseMillis);
        }
        f.whenComplete((v, err) -> {
            synchronized (this) {
                if (closed) {
                    return;
                }
                if (err != null && endsForGood(err)) {
                    return;
                }
                if (err == null) {
                    schedule(leaseMillis / 3, this::renew);
                } else if (lock.isHeldByCurrentClient()) {
                    // The lease still runs by this client's count: try again before it ends.
                    schedule(Math.min(retryMillis(), Math.max(1, lock.getLeaseRestMillis() / 2)), this::renew);
                } else {
                    lost();
                }
            }
        });
    }

    /**
     * The client or its runtime is gone: nothing can be acquired any more, so stop (telling the
     * listener if the lock was held). Called holding the monitor.
     */
    private boolean endsForGood(Throwable err) {
        Throwable e = err instanceof java.util.concurrent.CompletionException && err.getCause() != null
                ? err.getCause()
                : err;
        if (!(e instanceof ClosedException || e instanceof RuntimeShutDownException)) {
            return false;
        }
        if (held) {
            held = false;
            notifyListener(listener::onLost);
        }
        closed = true;
        return true;
    }

    /** Called holding the monitor. */
    private void lost() {
        held = false;
        notifyListener(listener::onLost);
        schedule(0, this::acquire);
    }

    /** @return the underlying lock (its token, lease and key) */
    public DistributedLock lock() {
        return lock;
    }

    /** @return whether the lock is held, by this client's conservative count */
    public synchronized boolean isHeld() {
        return held && lock.isHeldByCurrentClient();
    }

    /**
     * Stops acquiring and renewing, releases the lock (blocks up to the client's timeout) and
     * frees it. No listener call starts after this returns. Idempotent.
     */
    @Override
    public void close() {
        synchronized (this) {
            if (closedByUser) {
                return;
            }
            closed = true;
            closedByUser = true;
            held = false;
            if (scheduled != null) {
                scheduled.cancel(false);
            }
        }
        lock.close();
    }
}
