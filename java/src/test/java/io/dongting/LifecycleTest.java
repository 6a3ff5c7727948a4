package io.dongting;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.File;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ForkJoinPool;
import java.util.concurrent.Semaphore;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** Runtimes, embedded servers, shutdown, exit and resource use over many operations. */
class LifecycleTest {
    @TempDir
    Path tmp;

    @Test
    void embeddedServerFromFileStatusAndStop() throws Exception {
        try (DongtingRuntime rt = new DongtingRuntime(2, ForkJoinPool.commonPool());
                LocalCluster probe = LocalCluster.builder().nodes(1).runtime(rt).dataDir(tmp.resolve("a")).start()) {
            EmbeddedServer s = probe.servers().get(0);
            assertEquals(1, s.nodeId());
            assertTrue(s.serviceAddress().startsWith("127.0.0.1:"));
            assertTrue(s.replicateAddress().startsWith("127.0.0.1:"));
            ServerStatus st = s.status();
            assertEquals(1, st.nodeId());
            assertEquals(1, st.groups().size());
            assertEquals("leader", s.role(0));
            assertTrue(s.isLeader(0));
            assertNull(s.role(77));
            assertFalse(s.isStopped());
            assertEquals(s, probe.leader(0));
            String metrics = s.metrics();
            assertTrue(metrics.contains("dongting_group_is_leader{group=\"0\"} 1"), metrics);
            assertTrue(metrics.stripTrailing().endsWith("# EOF"), metrics);
            s.stop(Duration.ofMillis(500));
            assertTrue(s.isStopped());
            s.stop();
        }
    }

    @Test
    void clientFollowsANewLeader() {
        try (LocalCluster cluster = LocalCluster.start(3);
                KvClient kv = cluster.clientBuilder().timeoutMillis(15_000).build()) {
            kv.mkdir(0, "fo");
            kv.put(0, "fo.a", "1");
            EmbeddedServer leader = cluster.leader(0);
            assertNotNull(leader);
            leader.stop();
            kv.put(0, "fo.b", "2");
            assertEquals("1", kv.get(0, "fo.a").valueString());
            assertEquals("2", kv.get(0, "fo.b").valueString());
            EmbeddedServer next = cluster.leader(0);
            assertNotNull(next);
            assertTrue(next != leader);
        }
    }

    @Test
    void embeddedServerFromAFileServesClients() throws Exception {
        List<String> configs = LocalCluster.configs(1, new int[] {0, 5}, tmp.resolve("data"));
        assertEquals(1, configs.size());
        Path file = tmp.resolve("node1.toml");
        Files.writeString(file, configs.get(0), StandardCharsets.UTF_8);
        try (EmbeddedServer s = EmbeddedServer.startFile(file);
                KvClient kv = KvClient.builder(s.serviceAddress()).timeoutMillis(10_000).build()) {
            assertEquals(2, s.status().groups().size());
            long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(30);
            while (!(s.isLeader(0) && s.isLeader(5)) && System.nanoTime() < deadline) {
                Thread.sleep(20);
            }
            kv.put(5, "k", "in group 5");
            assertEquals("in group 5", kv.get(5, "k").valueString());
            assertNull(kv.get(0, "k"));
        }
        assertThrows(InvalidArgumentException.class, () -> LocalCluster.configs(1, new int[0], tmp));
    }

    @Test
    void serverConfigErrorsAreClear() throws Exception {
        ConfigException e = assertThrows(ConfigException.class, () -> EmbeddedServer.start("node_id = \"x\""));
        assertEquals(905, e.code());
        assertEquals("CONFIG_ERROR", e.codeName());
        assertThrows(ConfigException.class, () -> EmbeddedServer.startFile(tmp.resolve("missing.toml")));
        Path f = tmp.resolve("bad.toml");
        Files.writeString(f, "this is not toml", StandardCharsets.UTF_8);
        assertThrows(ConfigException.class, () -> EmbeddedServer.startFile(f));
        assertThrows(InvalidArgumentException.class, () -> LocalCluster.start(0));
    }

    @Test
    void runtimeShutdownFailsCallsInFlightAndLaterCalls() throws Exception {
        DongtingRuntime rt = new DongtingRuntime(1, ForkJoinPool.commonPool());
        KvClient u = KvClient.builder("127.0.0.1:1").runtime(rt).timeoutMillis(60_000).build();
        List<CompletableFuture<KvNode>> fs = new ArrayList<>();
        for (int i = 0; i < 10; i++) {
            fs.add(u.getAsync(0, "k" + i));
        }
        rt.shutdown(Duration.ofSeconds(5));
        assertTrue(rt.isShutDown());
        for (CompletableFuture<KvNode> f : fs) {
            Throwable t = f.handle((v, e) -> e).get(10, TimeUnit.SECONDS);
            assertInstanceOf(RuntimeShutDownException.class, t);
        }
        assertThrows(RuntimeShutDownException.class, () -> u.get(0, "k"));
        Throwable late = u.getAsync(0, "k").handle((v, e) -> e).get(10, TimeUnit.SECONDS);
        assertInstanceOf(RuntimeShutDownException.class, late);
        assertThrows(ClosedException.class, () -> KvClient.builder("127.0.0.1:1").runtime(rt).build());
        u.close();
        rt.shutdown(Duration.ofSeconds(1));
        assertEquals(0, rt.inFlight());
    }

    /**
     * 100,000 operations (async puts with 1,000 in flight, blocking gets) leave nothing
     * behind: no pending completion in Java or natively, no extra live native handle, no new
     * thread (the IO threads never attach to the JVM), and the heap back near its size after
     * a warm-up. Local JNI references are checked by -Xcheck:jni (see the pom), and the
     * library creates no global reference at all.
     */
    @Test
    void hundredThousandOperationsLeaveNothingBehind() throws Exception {
        try (DongtingRuntime rt = new DongtingRuntime(2, ForkJoinPool.commonPool());
                LocalCluster cluster = LocalCluster.builder().nodes(1).runtime(rt).start();
                KvClient kv = cluster.clientBuilder().timeoutMillis(60_000).build()) {
            kv.mkdir(0, "leak");
            byte[] value = new byte[64];
            run(kv, 10_000, value);
            long handles = Native.liveHandles();
            int threads = Thread.activeCount();
            long heap = usedHeapAfterGc();
            long t0 = System.nanoTime();
            run(kv, 90_000, value);
            double secs = (System.nanoTime() - t0) / 1e9;
            assertEquals(0, rt.inFlight());
            // Runtimes, clients and servers are counted process-wide (bits 42, 21, 0):
            // none may grow; one left by an earlier test may be released meanwhile.
            long after = Native.liveHandles();
            for (int shift : new int[] {42, 21, 0}) {
                long was = (handles >> shift) & 0x1f_ffff;
                long now = (after >> shift) & 0x1f_ffff;
                assertTrue(now <= was, "live handles at bit " + shift + " grew: " + was + " -> " + now);
            }
            assertTrue(Thread.activeCount() <= threads + 2, threads + " -> " + Thread.activeCount());
            long grown = usedHeapAfterGc() - heap;
            assertTrue(grown < 32L << 20, "heap grew by " + grown + " bytes");
            System.out.printf("leak check: 90000 operations in %.1f s, heap %+d KiB%n", secs, grown >> 10);
        }
    }

    private static void run(KvClient kv, int ops, byte[] value) throws Exception {
        Semaphore inFlight = new Semaphore(1000);
        List<Throwable> errors = new ArrayList<>();
        for (int i = 0; i < ops; i++) {
            if (i % 10 == 9) {
                // A blocking call between the asynchronous ones; it throws on any error.
                kv.get(0, "leak.k" + (i % 1000));
                continue;
            }
            inFlight.acquire();
            kv.putAsync(0, "leak.k" + (i % 1000), value).whenComplete((w, e) -> {
                if (e != null) {
                    synchronized (errors) {
                        errors.add(e);
                    }
                }
                inFlight.release();
            });
        }
        assertTrue(inFlight.tryAcquire(1000, 60, TimeUnit.SECONDS));
        assertTrue(errors.isEmpty(), errors.isEmpty() ? "" : errors.get(0).toString());
    }

    private static long usedHeapAfterGc() throws InterruptedException {
        Runtime r = Runtime.getRuntime();
        for (int i = 0; i < 3; i++) {
            System.gc();
            Thread.sleep(50);
        }
        return r.totalMemory() - r.freeMemory();
    }

    /** A JVM whose main returns with a live client, server and calls in flight exits promptly. */
    @Test
    void jvmExitsWithLiveClientAndServer() throws Exception {
        String java = Path.of(System.getProperty("java.home"), "bin", "java").toString();
        Process p = new ProcessBuilder(java, "-cp", System.getProperty("java.class.path"), ExitProbe.class.getName(),
                        tmp.toString())
                .redirectErrorStream(true)
                .start();
        boolean exited = p.waitFor(60, TimeUnit.SECONDS);
        String out = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
        if (!exited) {
            p.destroyForcibly();
        }
        assertTrue(exited, "the JVM did not exit: " + out);
        assertEquals(0, p.exitValue(), out);
        assertTrue(out.contains("probe: main returns"), out);
        assertTrue(new File(tmp.toFile(), "node1").isDirectory());
    }
}
