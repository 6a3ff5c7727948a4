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
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.BlockingQueue;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.LinkedBlockingQueue;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** Watches and distributed locks against an embedded 3-node cluster. */
class WatchLockTest extends ClusterTest {

    @TempDir
    Path tmp;

    @BeforeAll
    static void start() {
        startCluster(10_000);
    }

    static WatchEvent next(KvWatch w) {
        WatchEvent e = w.poll(10, TimeUnit.SECONDS);
        assertNotNull(e, "no watch event within 10 s");
        return e;
    }

    @Test
    void eventsComeInOrderWithTheWriteIndexes() {
        // From the index of the last write seen: a watch served by a follower that has not
        // applied it yet would otherwise report it too.
        long from = kv.mkdir(G, "wa").index();
        try (KvWatch w = kv.watch(G, List.of("wa.k"), from)) {
            long i1 = kv.put(G, "wa.k", "1").index();
            kv.put(G, "wa.other", "x");
            long i2 = kv.put(G, "wa.k", "2").index();
            long i3 = kv.remove(G, "wa.k").index();
            WatchEvent e1 = next(w);
            assertEquals(WatchEvent.Kind.CHANGED, e1.kind());
            assertEquals(G, e1.groupId());
            assertEquals(i1, e1.raftIndex());
            assertEquals("wa.k", e1.keyString());
            assertEquals(NodeKind.VALUE, e1.state());
            assertEquals("1", e1.valueString());
            WatchEvent e2 = next(w);
            assertEquals(i2, e2.raftIndex());
            assertEquals("2", e2.valueString());
            WatchEvent e3 = next(w);
            assertEquals(i3, e3.raftIndex());
            assertEquals(NodeKind.ABSENT, e3.state());
            assertEquals(0, e3.value().length);
            // wa.other is not watched.
            assertNull(w.poll(300, TimeUnit.MILLISECONDS));
            assertTrue(w.lastIndex() >= i3);
        }
    }

    @Test
    void directoryWatchSeesChildren() {
        long from = kv.mkdir(G, "wd").index();
        try (KvWatch w = kv.watch(G, List.of("wd"), from)) {
            long i1 = kv.mkdir(G, "wd.sub").index();
            long i2 = kv.put(G, "wd.sub.k", "v").index();
            WatchEvent e1 = next(w);
            assertEquals(i1, e1.raftIndex());
            assertEquals("wd.sub", e1.keyString());
            assertEquals(NodeKind.DIR, e1.state());
            WatchEvent e2 = next(w);
            assertEquals(i2, e2.raftIndex());
            assertEquals("wd.sub.k", e2.keyString());
        }
    }

    @Test
    void listenerRunsOnTheGivenExecutorInOrderUntilClosed() throws Exception {
        long from = kv.mkdir(G, "wl").index();
        ExecutorService exec = Executors.newSingleThreadExecutor(r -> new Thread(r, "user-listener"));
        BlockingQueue<String> seen = new LinkedBlockingQueue<>();
        AtomicInteger concurrent = new AtomicInteger();
        try {
            KvWatch w = kv.watch(G, List.of("wl"), from, e -> {
                assertEquals(1, concurrent.incrementAndGet());
                seen.add(Thread.currentThread().getName() + " " + e.raftIndex() + " " + e.keyString());
                concurrent.decrementAndGet();
            }, exec);
            List<String> want = new ArrayList<>();
            for (int i = 0; i < 5; i++) {
                long idx = kv.put(G, "wl.k" + i, "v").index();
                want.add("user-listener " + idx + " wl.k" + i);
            }
            List<String> got = new ArrayList<>();
            for (int i = 0; i < 5; i++) {
                String s = seen.poll(10, TimeUnit.SECONDS);
                assertNotNull(s, "listener got " + got);
                got.add(s);
            }
            assertEquals(want, got);
            assertThrows(IllegalStateException.class, () -> w.poll(0, TimeUnit.MILLISECONDS));
            w.close();
            assertTrue(w.isClosed());
            kv.put(G, "wl.after", "v");
            assertNull(seen.poll(500, TimeUnit.MILLISECONDS));
            assertThrows(ClosedException.class, w::lastIndex);
            w.close();
        } finally {
            exec.shutdownNow();
        }
    }

    @Test
    void aThrowingListenerKeepsItsWatchAndRuntimeShutdownEndsIt() throws Exception {
        BlockingQueue<Object> seen = new LinkedBlockingQueue<>();
        try (DongtingRuntime rt = new DongtingRuntime(1, java.util.concurrent.ForkJoinPool.commonPool());
                LocalCluster one = LocalCluster.builder().nodes(1).runtime(rt).dataDir(tmp.resolve("rt")).start()) {
            KvClient c = one.client();
            long from = c.mkdir(G, "throw").index();
            KvWatch w = c.watch(G, List.of("throw"), from, new WatchListener() {
                @Override
                public void onEvent(WatchEvent e) {
                    seen.add(e.keyString());
                    throw new IllegalStateException("listener failure " + e.keyString());
                }

                @Override
                public void onError(DongtingException error) {
                    seen.add(error);
                }
            }, Runnable::run);
            c.put(G, "throw.a", "1");
            c.put(G, "throw.b", "2");
            assertEquals("throw.a", seen.poll(10, TimeUnit.SECONDS));
            assertEquals("throw.b", seen.poll(10, TimeUnit.SECONDS));
            rt.shutdown(java.time.Duration.ofSeconds(5));
            assertInstanceOf(RuntimeShutDownException.class, seen.poll(10, TimeUnit.SECONDS));
            assertNull(seen.poll(300, TimeUnit.MILLISECONDS));
            w.close();
        }
    }

    @Test
    void resumeFromAnIndexWithoutDuplicates() {
        long from = kv.mkdir(G, "wr").index();
        long resumeAt;
        long i3;
        try (KvWatch w = kv.watch(G, List.of("wr"), from)) {
            kv.put(G, "wr.a", "1");
            long i2 = kv.put(G, "wr.b", "2").index();
            i3 = kv.put(G, "wr.c", "3").index();
            next(w);
            assertEquals(i2, next(w).raftIndex());
            resumeAt = i2;
        }
        long i4 = kv.put(G, "wr.d", "4").index();
        try (KvWatch w = kv.watch(G, List.of("wr"), resumeAt)) {
            WatchEvent e = next(w);
            assertEquals(i3, e.raftIndex());
            assertEquals("wr.c", e.keyString());
            assertEquals(i4, next(w).raftIndex());
            assertNull(w.poll(300, TimeUnit.MILLISECONDS));
        }
    }

    @Test
    void closeEndsABlockedPollAndLaterCalls() throws Exception {
        kv.mkdir(G, "wc");
        KvWatch w = kv.watch(G, "wc");
        CompletableFuture<Throwable> polled = CompletableFuture.supplyAsync(() -> {
            try {
                w.poll(1, TimeUnit.HOURS);
                return null;
            } catch (Throwable t) {
                return t;
            }
        });
        Thread.sleep(200);
        long t0 = System.nanoTime();
        w.close();
        assertInstanceOf(ClosedException.class, polled.get(5, TimeUnit.SECONDS));
        assertTrue(System.nanoTime() - t0 < TimeUnit.SECONDS.toNanos(5));
        assertThrows(ClosedException.class, w::lastIndex);
        assertThrows(InvalidArgumentException.class, () -> kv.watch(G, List.of("wc"), -1));
        assertThrows(InvalidKeyException.class, () -> kv.watch(G, "wc..bad"));
    }

    @Test
    void resumingBelowTheHistoryGivesACompactedEventFirst() {
        // A node keeps its last 100,000 events: write more, then resume from the start.
        try (LocalCluster one = LocalCluster.builder().nodes(1).dataDir(tmp.resolve("hist")).start();
                KvClient c = one.clientBuilder().timeoutMillis(30_000).build()) {
            c.mkdir(G, "hist");
            for (int b = 0; b < 11; b++) {
                Map<String, byte[]> batch = new LinkedHashMap<>();
                for (int i = 0; i < 10_000; i++) {
                    batch.put("hist.k" + i, new byte[] {(byte) b});
                }
                c.batchPut(G, batch);
            }
            try (KvWatch w = c.watch(G, List.of("hist"), 1)) {
                WatchEvent e = next(w);
                assertEquals(WatchEvent.Kind.COMPACTED, e.kind(), e.toString());
                assertTrue(e.historyFloor() > 1, e.toString());
                assertEquals("", e.keyString());
                long after = e.raftIndex();
                long idx = c.put(G, "hist.last", "x").index();
                WatchEvent n = next(w);
                while (n.raftIndex() < idx) {
                    assertTrue(n.raftIndex() > after, n + " after " + e);
                    n = next(w);
                }
                assertEquals(idx, n.raftIndex());
                assertEquals("hist.last", n.keyString());
            }
        }
    }

    @Test
    void lockIsMutuallyExclusiveAndTokensIncrease() throws Exception {
        kv.mkdir(G, "locks");
        try (KvClient other = cluster.clientBuilder().timeoutMillis(10_000).build();
                DistributedLock a = kv.createLock(G, "locks.m");
                DistributedLock b = other.createLock(G, "locks.m")) {
            long t1 = a.tryLock(10_000, 0);
            assertTrue(t1 > 0);
            assertTrue(a.isHeldByCurrentClient());
            assertEquals(t1, a.token());
            long rest = a.getLeaseRestMillis();
            assertTrue(rest > 0 && rest <= 10_000, "lease rest " + rest);
            assertEquals(0, b.tryLock(10_000, 0));
            assertFalse(b.isHeldByCurrentClient());
            assertEquals(0, b.getLeaseRestMillis());
            assertThrows(NotOwnerException.class, () -> b.updateLease(5_000));

            // b queues; a's unlock promotes it.
            CompletableFuture<Long> waiting = b.tryLockAsync(10_000, 8_000);
            Thread.sleep(200);
            assertFalse(waiting.isDone());
            a.unlock();
            long t2 = waiting.get(8, TimeUnit.SECONDS);
            assertTrue(t2 > t1, t2 + " after " + t1);
            assertTrue(b.isHeldByCurrentClient());
            assertFalse(a.isHeldByCurrentClient());
            b.updateLease(20_000);
            assertTrue(b.getLeaseRestMillis() > 10_000);
            b.updateLeaseAsync(15_000).get(5, TimeUnit.SECONDS);

            b.unlockAsync().get(5, TimeUnit.SECONDS);
            long t3 = a.tryLockAsync(10_000, 0).get(5, TimeUnit.SECONDS);
            assertTrue(t3 > t2, t3 + " after " + t2);
        }
    }

    @Test
    void lockArgumentsAndClose() {
        kv.mkdir(G, "lockargs");
        kv.put(G, "lockargs.value", "v");
        DistributedLock l = kv.createLock(G, "lockargs.l");
        assertThrows(InvalidArgumentException.class, () -> l.tryLock(0, 0));
        assertThrows(InvalidArgumentException.class, () -> l.tryLock(1_000, -1));
        assertThrows(InvalidKeyException.class, () -> kv.createLock(G, "lockargs..x"));
        try (DistributedLock onValue = kv.createLock(G, "lockargs.value")) {
            assertThrows(LockException.class, () -> onValue.tryLock(1_000, 0));
        }
        assertTrue(l.tryLock(5_000, 0) > 0);
        l.close();
        assertThrows(ClosedException.class, l::isHeldByCurrentClient);
        l.close();
        try (DistributedLock again = kv.createLock(G, "lockargs.l")) {
            assertTrue(again.tryLock(5_000, 0) > 0, "close released the lock");
        }
    }

    @Test
    void autoRenewalLockKeepsTheLockAndPassesItOnAtClose() throws Exception {
        kv.mkdir(G, "autolock");
        ExecutorService exec = Executors.newSingleThreadExecutor(r -> new Thread(r, "lock-listener"));
        BlockingQueue<String> events = new LinkedBlockingQueue<>();
        AutoRenewalLockListener record = new AutoRenewalLockListener() {
            @Override
            public void onAcquired(long token) {
                events.add(Thread.currentThread().getName() + " acquired " + token);
            }

            @Override
            public void onLost() {
                events.add(Thread.currentThread().getName() + " lost");
            }
        };
        BlockingQueue<Long> otherTokens = new LinkedBlockingQueue<>();
        try (KvClient other = cluster.clientBuilder().timeoutMillis(10_000).build()) {
            AutoRenewalLock first = kv.createAutoRenewalLock(G, "autolock.l", 1_500, record, exec);
            String got = events.poll(10, TimeUnit.SECONDS);
            assertNotNull(got);
            assertTrue(got.startsWith("lock-listener acquired "), got);
            long t1 = Long.parseLong(got.substring("lock-listener acquired ".length()));
            AutoRenewalLock second = other.createAutoRenewalLock(G, "autolock.l", 1_500, new AutoRenewalLockListener() {
                @Override
                public void onAcquired(long token) {
                    otherTokens.add(token);
                }

                @Override
                public void onLost() {}
            });
            // Three leases pass: renewals keep the first holder, the second stays queued.
            Thread.sleep(4_500);
            assertTrue(first.isHeld());
            assertNull(events.poll());
            assertNull(otherTokens.poll());
            first.close();
            assertFalse(first.isHeld());
            Long t2 = otherTokens.poll(10, TimeUnit.SECONDS);
            assertNotNull(t2, "the waiter was not promoted");
            assertTrue(t2 > t1, t2 + " after " + t1);
            assertTrue(second.isHeld());
            second.close();
            assertNull(events.poll(200, TimeUnit.MILLISECONDS));
            assertThrows(InvalidArgumentException.class, () -> kv.createAutoRenewalLock(G, "autolock.x", 0, record));
        } finally {
            exec.shutdownNow();
        }
    }

    /** A JVM whose main returns with a listener watch and a blocked poll exits promptly. */
    @Test
    void jvmExitsWithALiveWatch() throws Exception {
        String java = Path.of(System.getProperty("java.home"), "bin", "java").toString();
        Process p = new ProcessBuilder(java, "-cp", System.getProperty("java.class.path"),
                        WatchExitProbe.class.getName(), tmp.toString())
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
        assertTrue(out.contains("probe: event exit.k"), out);
        assertTrue(new File(tmp.toFile(), "node1").isDirectory());
    }
}
