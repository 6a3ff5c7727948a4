package io.dongting;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;
import java.util.concurrent.CompletionException;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.function.Executable;
import org.junit.jupiter.api.io.TempDir;

/**
 * Numeric arguments: every timeout, wait, group, index, TTL and lease out of range is refused
 * with an exception naming the argument and the value given, before anything is sent; never a
 * silent default.
 */
class ArgumentsTest {
    static final int G = 0;
    static final long MAX_TTL = 2_592_000_000L;
    static final long MAX_TIMEOUT = 86_400_000L;
    static LocalCluster cluster;
    static KvClient kv;
    /** Nothing listens there: a call that passed the checks fails on the network. */
    static KvClient nowhere;

    @BeforeAll
    static void start() {
        cluster = LocalCluster.start(3);
        kv = cluster.clientBuilder().timeoutMillis(10_000).build();
        kv.mkdir(G, "args");
        nowhere = new KvClient("127.0.0.1:1", 50);
    }

    @AfterAll
    static void stop() {
        for (AutoCloseable c : new AutoCloseable[] {nowhere, kv, cluster}) {
            try {
                if (c != null) {
                    c.close();
                }
            } catch (Exception e) {
                // Close the others too.
            }
        }
    }

    static byte[] b(String s) {
        return s.getBytes(StandardCharsets.UTF_8);
    }

    /** {@code call} throws {@code cls} with {@code code} and a message naming {@code name} and ending {@code got VALUE}. */
    static <T extends DongtingException> void refused(Class<T> cls, int code, String name, Object value, Executable call) {
        Throwable t = assertThrows(Throwable.class, call);
        if (t instanceof CompletionException) {
            t = t.getCause();
        }
        T e = assertInstanceOf(cls, t);
        assertEquals(code, e.code(), e.getMessage());
        assertTrue(e.getMessage().contains(name + " must be between"), e.getMessage());
        assertTrue(e.getMessage().endsWith("got " + value), e.getMessage());
    }

    static void invalid(String name, Object value, Executable call) {
        refused(InvalidArgumentException.class, 900, name, value, call);
    }

    static void unsent(Executable call) {
        Throwable t = assertThrows(Throwable.class, call);
        if (t instanceof CompletionException) {
            t = t.getCause();
        }
        assertTrue(t instanceof DtTimeoutException || t instanceof NetworkException, t.toString());
    }

    @Test
    void clientTimeoutsOutOfRangeAreRefusedZeroIncluded() {
        for (long bad : new long[] {0, -1, MAX_TIMEOUT + 1, Long.MIN_VALUE, Long.MAX_VALUE}) {
            invalid("timeoutMillis", bad, () -> new KvClient("127.0.0.1:1", bad));
            invalid("timeoutMillis", bad, () -> KvClient.builder("127.0.0.1:1").timeoutMillis(bad).build());
        }
        new KvClient("127.0.0.1:1", 1).close();
        new KvClient("127.0.0.1:1", KvClient.MAX_TIMEOUT_MILLIS).close();
        assertEquals(MAX_TIMEOUT, KvClient.MAX_TIMEOUT_MILLIS);
        assertEquals(MAX_TTL, KvClient.MAX_TTL_MILLIS);
    }

    @Test
    void port0IsRefusedAtOnce() {
        long t0 = System.nanoTime();
        for (String bad : new String[] {"127.0.0.1:0", "127.0.0.1:1,localhost:0"}) {
            InvalidArgumentException e =
                    assertThrows(InvalidArgumentException.class, () -> new KvClient(bad, 60_000));
            assertTrue(e.getMessage().contains(":0\" has port 0"), e.getMessage());
        }
        assertTrue(System.nanoTime() - t0 < TimeUnit.SECONDS.toNanos(5));
    }

    @Test
    void negativeGroupsAreRefusedEverywhere() {
        for (int bad : new int[] {-1, Integer.MIN_VALUE}) {
            invalid("groupId", bad, () -> nowhere.get(bad, "k"));
            invalid("groupId", bad, () -> nowhere.getAsync(bad, "k").join());
            invalid("groupId", bad, () -> nowhere.putTemp(bad, "k", b("v"), 1000));
            invalid("groupId", bad, () -> nowhere.batchGet(bad, "k"));
            invalid("groupId", bad, () -> nowhere.createLock(bad, "k"));
            invalid("groupId", bad, () -> nowhere.watch(bad, "k"));
        }
        assertThrows(GroupNotFoundException.class, () -> kv.get(Integer.MAX_VALUE, "args"));
    }

    @Test
    void ttlsDtKvRefusesAreInvalidTtlAndNegativeOnesInvalidArguments() {
        for (long bad : new long[] {0, MAX_TTL + 1, Long.MAX_VALUE}) {
            refused(InvalidTtlException.class, 1022, "ttlMillis", bad, () -> nowhere.putTemp(G, "k", b("v"), bad));
            refused(InvalidTtlException.class, 1022, "ttlMillis", bad, () -> nowhere.makeTempDir(G, "k", bad));
            refused(InvalidTtlException.class, 1022, "ttlMillis", bad, () -> nowhere.updateTtlAsync(G, "k", bad).join());
        }
        for (long bad : new long[] {-5, Long.MIN_VALUE}) {
            invalid("ttlMillis", bad, () -> nowhere.putTemp(G, "k", b("v"), bad));
            invalid("ttlMillis", bad, () -> nowhere.makeTempDirAsync(G, "k", bad).join());
            invalid("ttlMillis", bad, () -> nowhere.updateTtl(G, "k", bad));
        }
        assertTrue(kv.putTemp(G, "args.t", b("v"), MAX_TTL).deadlineMillis() > 0);
        assertTrue(kv.updateTtl(G, "args.t", MAX_TTL).deadlineMillis() > 0);
        kv.remove(G, "args.t");
    }

    @Test
    void leasesAndLockWaitsOutOfRangeAreRefused() {
        DistributedLock l = nowhere.createLock(G, "k");
        for (long bad : new long[] {0, -1, MAX_TTL + 1}) {
            invalid("leaseMillis", bad, () -> l.tryLock(bad, 0));
            invalid("leaseMillis", bad, () -> l.tryLockAsync(bad, 0));
            invalid("leaseMillis", bad, () -> l.updateLease(bad));
        }
        for (long bad : new long[] {-1, MAX_TTL + 1}) {
            invalid("waitTimeoutMillis", bad, () -> l.tryLock(1_000, bad));
        }
        for (long bad : new long[] {2, MAX_TTL + 1}) {
            invalid("leaseMillis", bad, () -> nowhere.createAutoRenewalLock(G, "k", bad, new AutoRenewalLockListener() {
                @Override
                public void onAcquired(long token) {}

                @Override
                public void onLost() {}
            }));
        }
        unsent(() -> l.tryLock(MAX_TTL, MAX_TTL));
        l.close();
        try (DistributedLock held = kv.createLock(G, "args.l")) {
            assertTrue(held.tryLock(MAX_TTL, MAX_TTL) > 0);
            held.updateLease(MAX_TTL);
            held.unlock();
        }
    }

    @Test
    void watchIndexesAndWaitsOutOfRangeAreRefused() {
        invalid("fromIndex", -1, () -> nowhere.watch(G, List.of("k"), -1));
        invalid("fromIndex", Long.MIN_VALUE, () -> nowhere.watch(G, List.of("k"), Long.MIN_VALUE));
        try (KvWatch w = kv.watch(G, "args.w")) {
            InvalidArgumentException e =
                    assertThrows(InvalidArgumentException.class, () -> w.poll(-1, TimeUnit.MILLISECONDS));
            assertTrue(e.getMessage().endsWith("got -1 MILLISECONDS"), e.getMessage());
            assertThrows(InvalidArgumentException.class, () -> w.poll(2, TimeUnit.DAYS));
            assertNull(w.poll(0, TimeUnit.MILLISECONDS));
        }
    }

    @Test
    void runtimeServerAndClusterArgumentsAreRefused(@TempDir Path tmp) {
        invalid("workerThreads", -1, () -> new DongtingRuntime(-1, Runnable::run));
        invalid("workerThreads", 257, () -> new DongtingRuntime(257, Runnable::run));
        DongtingRuntime rt = new DongtingRuntime(1, Runnable::run);
        InvalidArgumentException e =
                assertThrows(InvalidArgumentException.class, () -> rt.shutdown(Duration.ofMillis(-1)));
        assertTrue(e.getMessage().endsWith("got PT-0.001S"), e.getMessage());
        assertFalse(rt.isShutDown());
        assertThrows(InvalidArgumentException.class, () -> rt.shutdown(Duration.ofSeconds(Long.MAX_VALUE)));
        rt.shutdown(Duration.ZERO);
        assertTrue(rt.isShutDown());
        EmbeddedServer s = cluster.servers().get(0);
        assertThrows(InvalidArgumentException.class, () -> s.stop(Duration.ofSeconds(-1)));
        assertFalse(s.isStopped());
        invalid("groupId", -1, () -> LocalCluster.configs(1, new int[] {0, -1}, tmp));
        invalid("groups", -1, () -> LocalCluster.builder().groups(0, -1).start());
        assertThrows(InvalidArgumentException.class, () -> cluster.waitReady(Duration.ofSeconds(-1)));
        assertNotNull(kv.get(G, "args"));
    }
}
