package io.dongting;

import java.lang.ref.Cleaner;
import java.util.Objects;
import java.util.concurrent.CompletableFuture;
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
 * time gets each event). A listener watch has one daemon thread ({@code dongting-watch-N}) that
 * polls natively and hands each event to the {@link WatchListener} on the given executor, waiting
 * for each call to return before the next: events are delivered in order, one at a time, and a
 * slow listener slows the watch rather than queueing events in memory.
 *
 * <p>{@link #close()} unregisters the watch at the server and stops delivery; a polling watch that
 * becomes unreachable without being closed is closed by a cleaner.
 */
public final class KvWatch implements AutoCloseable {
    /** Longest native wait of a listener watch's thread between checks for close. */
    private static final long LISTENER_POLL_MILLIS = 1_000;

    private static final Cleaner CLEANER = Cleaner.create();

    private final int groupId;
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

    private KvWatch(int groupId, long handle, boolean hasListener) {
        this.groupId = groupId;
        this.hasListener = hasListener;
        this.state = new State(handle);
        this.cleanable = CLEANER.register(this, state);
    }

    /** Registers a polling watch; blocks until a server accepted it. */
    static KvWatch open(long client, int groupId, byte[][] keys, long fromIndex) {
        return new KvWatch(groupId, register(client, groupId, keys, fromIndex), false);
    }

    private static long register(long client, int groupId, byte[][] keys, long fromIndex) {
        Args.range("fromIndex", fromIndex, 0, Long.MAX_VALUE);
        return Codec.handle(Native.watchNew(client, groupId, keys, fromIndex));
    }

    /** Registers a listener watch and starts its delivery thread. */
    static KvWatch open(
            long client, int groupId, byte[][] keys, long fromIndex, WatchListener listener, Executor executor) {
        Objects.requireNonNull(listener, "listener");
        Objects.requireNonNull(executor, "executor");
        KvWatch w = new KvWatch(groupId, register(client, groupId, keys, fromIndex), true);
        // The thread holds the watch itself: a listener watch lives until closed, not until
        // its handle is dropped.
        Thread t = new Thread(() -> deliver(w.groupId, w.state, listener, executor), "dongting-watch-" + w.state.handle);
        t.setDaemon(true);
        t.start();
        return w;
    }

    /** The listener watch's loop: poll natively, hand each event over, wait for it. */
    private static void deliver(int groupId, State st, WatchListener listener, Executor executor) {
        while (!st.closed) {
            WatchEvent ev;
            try {
                ev = Codec.event(groupId, Native.watchNext(st.handle, LISTENER_POLL_MILLIS));
            } catch (DongtingException e) {
                if (!st.closed && !(e instanceof ClosedException)) {
                    runOn(executor, st, () -> listener.onError(e));
                }
                try {
                    st.run();
                } catch (DongtingException ignored) {
                    // Ended already; only the handle is left to forget.
                }
                return;
            }
            if (ev != null && !runOn(executor, st, () -> listener.onEvent(ev))) {
                return;
            }
        }
    }

    /** Runs {@code task} on the executor unless closed and waits for it; false if rejected. */
    private static boolean runOn(Executor executor, State st, Runnable task) {
        CompletableFuture<Void> done = new CompletableFuture<>();
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
                    done.complete(null);
                }
            });
        } catch (RejectedExecutionException e) {
            // The executor is shut down: nobody can receive events any more.
            try {
                st.run();
            } catch (DongtingException ignored) {
                // Unregistering is best effort here; the handle is forgotten either way.
            }
            return false;
        }
        done.join();
        return true;
    }

    /** @return the raft group watched */
    public int groupId() {
        return groupId;
    }

    /**
     * The next event, waiting up to {@code timeout}. Blocks the calling thread (natively, holding
     * no JNI reference while it waits); a {@link #close()} from another thread ends the wait
     * within about 100 ms with {@link ClosedException}. For a polling watch only: a listener
     * watch's events go to its listener.
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
        return Codec.event(groupId, Native.watchNext(state.handle, ms));
    }

    /**
     * @return the highest raft index the watch is complete up to: a new watch from it sees
     *     exactly the later changes (blocks while another thread is inside {@link #poll})
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
