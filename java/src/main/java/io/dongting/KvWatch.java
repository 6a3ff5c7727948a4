package io.dongting;

import java.lang.ref.Cleaner;
import java.util.Objects;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CompletionException;
import java.util.concurrent.Executor;
import java.util.concurrent.RejectedExecutionException;
import java.util.concurrent.TimeUnit;

/**
 * A watch on keys of one raft group (see {@link KvClient#watch(int, String...)}): each key covers
 * itself and every key under it, the empty key the whole tree. It reconnects by itself, to any
 * node of the group, and resumes after the last index it delivered, so every change is seen once
 * and in raft index order.
 *
 * <p>Two forms. A polling watch is read with {@link #poll(long, TimeUnit)} (one reader at a
 * time gets each event). A listener watch holds no thread: each event arrives through the
 * runtime's completion queue and is handed to the {@link WatchListener} on the given executor,
 * and the next read starts when the call returned: events are delivered in order, one at a time,
 * and a slow listener slows the watch rather than queueing events in memory.
 *
 * <p>{@link #close()} unregisters the watch at the server and stops delivery; a polling watch that
 * becomes unreachable without being closed is closed by a cleaner.
 */
public final class KvWatch implements AutoCloseable {
    /** Longest single read of a listener watch (a close ends it at once). */
    private static final long LISTENER_WAIT_MILLIS = KvClient.MAX_TIMEOUT_MILLIS;

    private static final Cleaner CLEANER = Cleaner.create();

    private final int groupId;
    private final DongtingRuntime runtime;
    private final State state;
    private final boolean hasListener;
    private final Cleaner.Cleanable cleanable;

    /** What the cleaner and the listener thread need, without the KvWatch itself. */
    private static final class State implements Runnable {
        final long handle;
        volatile boolean closed;

        State(long handle) {
            this.handle = handle;
        }

        @Override
        public void run() {
            closed = true;
            Codec.check(Native.watchClose(handle));
        }
    }

    private KvWatch(DongtingRuntime runtime, int groupId, long handle, boolean hasListener) {
        this.runtime = runtime;
        this.groupId = groupId;
        this.hasListener = hasListener;
        this.state = new State(handle);
        this.cleanable = CLEANER.register(this, state);
    }

    /** Registers a polling watch; blocks until a server accepted it. */
    static KvWatch open(DongtingRuntime runtime, long client, int groupId, byte[][] keys, long fromIndex) {
        return new KvWatch(runtime, groupId, register(client, groupId, keys, fromIndex), false);
    }

    private static long register(long client, int groupId, byte[][] keys, long fromIndex) {
        Args.range("fromIndex", fromIndex, 0, Long.MAX_VALUE);
        return Codec.handle(Native.watchNew(client, groupId, keys, fromIndex));
    }

    /** Registers a listener watch and starts its first read. */
    static KvWatch open(
            DongtingRuntime runtime,
            long client,
            int groupId,
            byte[][] keys,
            long fromIndex,
            WatchListener listener,
            Executor executor) {
        Objects.requireNonNull(listener, "listener");
        Objects.requireNonNull(executor, "executor");
        KvWatch w = new KvWatch(runtime, groupId, register(client, groupId, keys, fromIndex), true);
        // The pending read holds the watch's state: a listener watch lives until closed, not
        // until its handle is dropped.
        listen(runtime, groupId, w.state, listener, executor);
        return w;
    }

    /** Starts one read of {@code st}'s watch; its result completes on the runtime's executor. */
    private static CompletableFuture<Codec.Reply> read(DongtingRuntime runtime, Executor exec, State st, long ms) {
        return runtime.submit(exec, r -> r, token -> Native.watchNextAsync(st.handle, token, ms));
    }

    /**
     * The listener watch's loop: read, hand the event over, start the next read once the
     * listener returned. An error other than a close goes to the listener and ends the watch.
     */
    private static void listen(
            DongtingRuntime runtime, int groupId, State st, WatchListener listener, Executor executor) {
        if (st.closed) {
            return;
        }
        read(runtime, runtime.executor(), st, LISTENER_WAIT_MILLIS).whenComplete((r, err) -> {
            if (err != null) {
                DongtingException e = unwrap(err);
                if (!st.closed && !(e instanceof ClosedException)) {
                    runOn(executor, st, () -> listener.onError(e), () -> closeQuietly(st));
                } else {
                    closeQuietly(st);
                }
                return;
            }
            WatchEvent ev = Codec.event(groupId, r);
            if (ev == null) {
                listen(runtime, groupId, st, listener, executor);
                return;
            }
            runOn(executor, st, () -> listener.onEvent(ev), () -> listen(runtime, groupId, st, listener, executor));
        });
    }

    private static DongtingException unwrap(Throwable err) {
        Throwable e = err instanceof CompletionException && err.getCause() != null ? err.getCause() : err;
        if (e instanceof DongtingException d) {
            return d;
        }
        if (e instanceof RuntimeException re) {
            throw re;
        }
        if (e instanceof Error er) {
            throw er;
        }
        throw new IllegalStateException(e);
    }

    private static void closeQuietly(State st) {
        try {
            st.run();
        } catch (DongtingException ignored) {
            // Ended already; only the handle is left to forget.
        }
    }

    /**
     * Runs {@code task} on the executor unless closed, then {@code next} (on the same thread);
     * a rejecting executor (shut down: nobody can receive events any more) closes the watch.
     */
    private static void runOn(Executor executor, State st, Runnable task, Runnable next) {
        try {
            executor.execute(() -> {
                try {
                    if (!st.closed) {
                        task.run();
                    }
                } catch (Throwable t) {
                    Thread cur = Thread.currentThread();
                    cur.getUncaughtExceptionHandler().uncaughtException(cur, t);
                } finally {
                    next.run();
                }
            });
        } catch (RejectedExecutionException e) {
            closeQuietly(st);
        }
    }

    /** @return the raft group watched */
    public int groupId() {
        return groupId;
    }

    /**
     * The next event, waiting up to {@code timeout}. Blocks the calling thread (the read itself
     * holds no thread: its result arrives through the runtime's completion queue); a {@link
     * #close()} from another thread ends the wait at once with {@link ClosedException}. For a
     * polling watch only: a listener watch's events go to its listener.
     *
     * @param timeout how long to wait (0: take only what already arrived; at most one day,
     *     {@link KvClient#MAX_TIMEOUT_MILLIS})
     * @param unit the unit of {@code timeout}
     * @return the event, or null when none arrived in time (nothing is lost; call again)
     * @throws ClosedException after {@link #close()} or the client's close
     * @throws RuntimeShutDownException when the runtime shut down
     * @throws IllegalStateException on a listener watch
     */
    public WatchEvent poll(long timeout, TimeUnit unit) {
        Objects.requireNonNull(unit, "unit");
        if (hasListener) {
            throw new IllegalStateException("a listener watch delivers its events to its listener");
        }
        long ms = unit.toMillis(timeout);
        if (timeout < 0 || ms > KvClient.MAX_TIMEOUT_MILLIS) {
            throw new InvalidArgumentException(
                    900,
                    "timeout must be between 0 and " + KvClient.MAX_TIMEOUT_MILLIS + " ms, got " + timeout + " " + unit,
                    false,
                    null);
        }
        Codec.Reply r;
        try {
            r = read(runtime, Runnable::run, state, ms).join();
        } catch (CompletionException e) {
            throw unwrap(e);
        }
        return Codec.event(groupId, r);
    }

    /**
     * @return the highest raft index the watch is complete up to (as of the last read): a new
     *     watch from it sees exactly the later changes
     * @throws ClosedException after {@link #close()}
     */
    public long lastIndex() {
        return Codec.u64(Native.watchLastIndex(state.handle));
    }

    /** @return whether {@link #close()} ran or a listener watch ended on an error */
    public boolean isClosed() {
        return state.closed;
    }

    /**
     * Stops delivery (no listener call starts after this returns, though one in progress
     * finishes) and unregisters the watch at the server (blocks up to the client's timeout).
     * Idempotent.
     */
    @Override
    public void close() {
        state.closed = true;
        cleanable.clean();
    }
}
