package io.dongting;

import java.time.Duration;
import java.util.Objects;
import java.util.Set;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.Executor;
import java.util.concurrent.ForkJoinPool;
import java.util.concurrent.RejectedExecutionException;
import java.util.concurrent.atomic.AtomicLong;
import java.util.function.Function;

/**
 * The IO threads that clients and embedded servers run on, and the hand-over of asynchronous
 * results to Java.
 *
 * <p>Most programs never create one: clients and servers use {@link #defaultRuntime()}. An
 * explicit runtime isolates a set of clients and servers and can be shut down on its own.
 *
 * <p>Asynchronous results: the IO threads are native threads that never enter the JVM. When an
 * operation completes they queue it; one daemon thread per runtime ({@code dongting-completions})
 * takes completions in batches and completes each {@link CompletableFuture} by a task on the
 * executor (by default {@link ForkJoinPool#commonPool()}), so user callbacks never run on an IO
 * thread nor on that thread.
 *
 * <p>Every runtime still running at JVM exit is shut down by a shutdown hook (calls in flight
 * fail with {@link RuntimeShutDownException}, embedded servers stop gracefully); a live client
 * never keeps the JVM from exiting.
 */
public final class DongtingRuntime implements AutoCloseable {
    private static final Set<DongtingRuntime> LIVE = ConcurrentHashMap.newKeySet();
    private static DongtingRuntime defaultRuntime;

    static {
        Runtime.getRuntime().addShutdownHook(new Thread(DongtingRuntime::shutdownAll, "dongting-shutdown"));
    }

    private final long handle;
    private final Executor executor;
    private final ConcurrentHashMap<Long, Pending<?>> pending = new ConcurrentHashMap<>();
    private final AtomicLong nextToken = new AtomicLong(1);
    private final Thread drainer;
    private volatile boolean shutDown;

    /** A runtime with one IO thread per CPU (at most 4), completing futures on the common pool. */
    public DongtingRuntime() {
        this(0, ForkJoinPool.commonPool());
    }

    /**
     * A runtime with its own IO threads.
     *
     * @param workerThreads IO threads to start (0: one per CPU, at most 4; at most 256)
     * @param executor where asynchronous results complete their futures (and so where
     *     non-async dependent stages run)
     */
    public DongtingRuntime(int workerThreads, Executor executor) {
        this.executor = Objects.requireNonNull(executor, "executor");
        Args.range("workerThreads", workerThreads, 0, 256);
        this.handle = Codec.handle(Native.runtimeNew(workerThreads));
        drainer = new Thread(this::drain, "dongting-completions-" + handle);
        drainer.setDaemon(true);
        drainer.start();
        LIVE.add(this);
    }

    /**
     * The process-wide runtime, created on first use (and again after it was shut down).
     *
     * @return the default runtime
     */
    public static synchronized DongtingRuntime defaultRuntime() {
        if (defaultRuntime == null || defaultRuntime.shutDown) {
            defaultRuntime = new DongtingRuntime();
        }
        return defaultRuntime;
    }

    long handle() {
        return handle;
    }

    Executor executor() {
        return executor;
    }

    /** @return whether {@link #shutdown} ran */
    public boolean isShutDown() {
        return shutDown;
    }

    /**
     * Shuts the runtime down: calls in flight fail with {@link RuntimeShutDownException},
     * embedded servers still running stop (1 s grace each), the IO threads stop (waiting up to
     * {@code timeout} for them). Idempotent. Blocks.
     *
     * @param timeout how long to wait for the IO threads (0 to one day)
     */
    public void shutdown(Duration timeout) {
        long ms = Args.millis("timeout", timeout, KvClient.MAX_TIMEOUT_MILLIS);
        synchronized (this) {
            if (shutDown) {
                return;
            }
            shutDown = true;
        }
        LIVE.remove(this);
        try {
            Codec.check(Native.runtimeShutdown(handle, ms));
        } finally {
            // The drain thread hands over what is queued, then ends.
            Native.runtimeFree(handle);
        }
    }

    /** {@link #shutdown(Duration)} with a 5 s timeout. */
    @Override
    public void close() {
        shutdown(Duration.ofSeconds(5));
    }

    /**
     * Asynchronous operations started and not yet completed, counted natively and in Java (a
     * leak check).
     *
     * @return operations in flight
     */
    long inFlight() {
        return Math.max(pending.size(), Native.runtimePending(handle));
    }

    /** Starts an asynchronous call whose native part returns null or an encoded error. */
    interface Start {
        byte[] start(long token);
    }

    private record Pending<T>(CompletableFuture<T> future, Function<Codec.Reply, T> convert, Executor executor) {
        void complete(Object result) {
            try {
                if (result instanceof Throwable t) {
                    future.completeExceptionally(t);
                } else {
                    future.complete(convert.apply((Codec.Reply) result));
                }
            } catch (Throwable t) {
                future.completeExceptionally(t);
            }
        }
    }

    <T> CompletableFuture<T> submit(Executor exec, Function<Codec.Reply, T> convert, Start start) {
        CompletableFuture<T> f = new CompletableFuture<>();
        if (shutDown) {
            f.completeExceptionally(new RuntimeShutDownException(902, "the runtime is shut down", false, null));
            return f;
        }
        long token = nextToken.getAndIncrement();
        pending.put(token, new Pending<>(f, convert, exec));
        byte[] err;
        try {
            err = start.start(token);
        } catch (RuntimeException | Error e) {
            pending.remove(token);
            throw e;
        }
        if (err != null) {
            pending.remove(token);
            Object r = new Codec.Reader(err).result();
            f.completeExceptionally((Throwable) r);
        }
        return f;
    }

    private void drain() {
        while (true) {
            byte[] batch = Native.awaitCompletions(handle);
            if (batch == null) {
                break;
            }
            Codec.Reader r = new Codec.Reader(batch);
            int n = r.len();
            for (int i = 0; i < n; i++) {
                long token = r.i64();
                Object result = r.result();
                Pending<?> p = pending.remove(token);
                if (p == null) {
                    continue;
                }
                try {
                    p.executor.execute(() -> p.complete(result));
                } catch (RejectedExecutionException e) {
                    // The executor is shut down: complete here rather than never.
                    p.complete(result);
                }
            }
        }
        // Freed: anything still registered can no longer complete.
        for (Long token : pending.keySet()) {
            Pending<?> p = pending.remove(token);
            if (p != null) {
                p.future.completeExceptionally(
                        new RuntimeShutDownException(902, "the runtime was shut down", false, null));
            }
        }
    }

    private static void shutdownAll() {
        for (DongtingRuntime rt : LIVE.toArray(new DongtingRuntime[0])) {
            try {
                rt.shutdown(Duration.ofSeconds(2));
            } catch (RuntimeException e) {
                // Best effort at exit: shut the others down too.
            }
        }
    }

    @Override
    public String toString() {
        return "DongtingRuntime[" + handle + (shutDown ? ", shut down]" : "]");
    }
}
