package io.dongting.bench;

import io.dongting.DongtingRuntime;
import io.dongting.KvClient;
import io.dongting.LocalCluster;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.concurrent.ForkJoinPool;
import java.util.concurrent.Semaphore;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicReference;

/**
 * Put throughput of the Java client (asynchronous, a bounded number in flight) beside the
 * Rust client, against the same embedded 1-node cluster in one run.
 *
 * <pre>
 * java -cp target/classes:target/test-classes io.dongting.bench.PutThroughput \
 *     [COUNT] [IN_FLIGHT] [ROUNDS] [RUST_PUT_BENCH_BINARY]
 * </pre>
 *
 * The Rust figure comes from {@code cargo build -p dongting-sdk --example put_bench}. Rounds
 * alternate Java and Rust; the medians and their ratio are printed last. With
 * {@code -Dbench.direct=1} futures complete on the completion thread itself instead of the
 * common pool (measures the cost of the executor hand-over).
 */
public final class PutThroughput {
    private PutThroughput() {}

    static double javaAsync(KvClient kv, String dir, int count, int inFlight) throws Exception {
        kv.mkdir(0, dir);
        byte[] value = new byte[64];
        Arrays.fill(value, (byte) 'v');
        Semaphore sem = new Semaphore(inFlight);
        AtomicReference<Throwable> error = new AtomicReference<>();
        long t0 = System.nanoTime();
        for (int i = 0; i < count; i++) {
            sem.acquire();
            kv.putAsync(0, dir + ".k" + (i % 10_000), value).whenComplete((w, e) -> {
                if (e != null) {
                    error.compareAndSet(null, e);
                }
                sem.release();
            });
        }
        if (!sem.tryAcquire(inFlight, 600, TimeUnit.SECONDS)) {
            throw new IllegalStateException("puts did not finish");
        }
        double secs = (System.nanoTime() - t0) / 1e9;
        if (error.get() != null) {
            throw new IllegalStateException("a put failed", error.get());
        }
        return secs;
    }

    static double rust(String binary, String servers, int count, int inFlight) throws IOException, InterruptedException {
        Process p = new ProcessBuilder(binary, servers, Integer.toString(count), Integer.toString(inFlight))
                .redirectErrorStream(true)
                .start();
        String out = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8).strip();
        if (p.waitFor() != 0) {
            throw new IllegalStateException("put_bench failed: " + out);
        }
        System.out.println(out);
        for (String tok : out.split("\\s+")) {
            if (tok.startsWith("seconds=")) {
                return Double.parseDouble(tok.substring("seconds=".length()));
            }
        }
        throw new IllegalStateException("no seconds= in: " + out);
    }

    static double median(List<Double> v) {
        List<Double> s = new ArrayList<>(v);
        s.sort(null);
        return s.get(s.size() / 2);
    }

    /**
     * @param args count, in-flight limit, rounds, Rust put_bench binary (optional)
     * @throws Exception on any failure
     */
    public static void main(String[] args) throws Exception {
        int count = args.length > 0 ? Integer.parseInt(args[0]) : 20_000;
        int inFlight = args.length > 1 ? Integer.parseInt(args[1]) : 1_000;
        int rounds = args.length > 2 ? Integer.parseInt(args[2]) : 3;
        String rustBin = args.length > 3 ? args[3] : null;
        List<Double> java = new ArrayList<>();
        List<Double> rust = new ArrayList<>();
        // The client gets IO threads of its own, as the Rust client (a separate process with
        // a 2-thread runtime) has; the node runs on the default runtime.
        try (LocalCluster cluster = LocalCluster.start(1);
                DongtingRuntime clientRt = new DongtingRuntime(2, ForkJoinPool.commonPool());
                KvClient kv = (System.getProperty("bench.direct") != null
                                ? cluster.clientBuilder().executor(Runnable::run)
                                : cluster.clientBuilder())
                        .runtime(clientRt)
                        .timeoutMillis(60_000)
                        .build()) {
            javaAsync(kv, "jwarm", 5_000, inFlight);
            for (int r = 0; r < rounds; r++) {
                double secs = javaAsync(kv, "jbench", count, inFlight);
                java.add(count / secs);
                System.out.printf("java-async puts=%d in_flight=%d seconds=%.3f puts_per_s=%.0f%n",
                        count, inFlight, secs, count / secs);
                if (rustBin != null) {
                    rust.add(count / rust(rustBin, cluster.addresses(), count, inFlight));
                }
            }
            kv.mkdir(0, "jblock");
            int n = 1_000;
            long t0 = System.nanoTime();
            for (int i = 0; i < n; i++) {
                kv.put(0, "jblock.k" + i, "v");
            }
            double secs = (System.nanoTime() - t0) / 1e9;
            System.out.printf("java-blocking puts=%d in_flight=1 seconds=%.3f puts_per_s=%.0f latency_us=%.0f%n",
                    n, secs, n / secs, secs / n * 1e6);
        }
        System.out.printf("median java-async puts_per_s=%.0f%n", median(java));
        if (!rust.isEmpty()) {
            System.out.printf("median rust puts_per_s=%.0f ratio java/rust=%.2f%n", median(rust), median(java) / median(rust));
        }
    }
}
