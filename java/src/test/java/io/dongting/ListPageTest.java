package io.dongting;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.Iterator;
import java.util.List;
import java.util.NoSuchElementException;
import java.util.concurrent.CompletionException;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.function.Executable;

/** Paged listing ({@code listPage}, {@code iterList}) and {@code list} of a large directory. */
class ListPageTest extends ClusterTest {
    /** Children of {@link #BIG}: more than one default page and more than one batch. */
    static final int BIG_COUNT = 12_000;
    static final String BIG = "big";

    @BeforeAll
    static void start() {
        startCluster(30_000);
        kv.mkdir(G, "pages");
        WriteResult w = kv.batchPut(G, keys("pages.", List.of("c", "a", "e", "b", "d")), values(5));
        assertArrayEquals(new int[5], w.codes());
        kv.mkdir(G, "emptydir");
        kv.mkdir(G, BIG);
        // Batches hold at most 10,000 keys.
        for (int from = 0; from < BIG_COUNT; from += 10_000) {
            List<String> names = new ArrayList<>();
            for (int i = from; i < Math.min(BIG_COUNT, from + 10_000); i++) {
                names.add(bigName(i));
            }
            assertArrayEquals(new int[names.size()], kv.batchPut(G, keys(BIG + ".", names), values(names.size())).codes());
        }
    }

    static String bigName(int i) {
        return String.format("k%05d", i);
    }

    static byte[] b(String s) {
        return s.getBytes(StandardCharsets.UTF_8);
    }

    static List<byte[]> keys(String prefix, List<String> names) {
        List<byte[]> out = new ArrayList<>();
        for (String n : names) {
            out.add(b(prefix + n));
        }
        return out;
    }

    static List<byte[]> values(int n) {
        List<byte[]> out = new ArrayList<>();
        for (int i = 0; i < n; i++) {
            out.add(b("v" + i));
        }
        return out;
    }

    static List<String> names(List<KvNode> nodes) {
        return nodes.stream().map(KvNode::name).toList();
    }

    static List<String> names(Iterable<KvNode> nodes) {
        List<String> out = new ArrayList<>();
        for (KvNode n : nodes) {
            out.add(n.name());
        }
        return out;
    }

    static List<String> bigNames(int from, int to) {
        List<String> out = new ArrayList<>();
        for (int i = from; i < to; i++) {
            out.add(bigName(i));
        }
        return out;
    }

    /** {@code call} fails (directly or through a future) with an InvalidArgumentException naming the limit. */
    static void badLimit(long value, Executable call) {
        Throwable t = assertThrows(Throwable.class, call);
        if (t instanceof CompletionException) {
            t = t.getCause();
        }
        InvalidArgumentException e = assertInstanceOf(InvalidArgumentException.class, t);
        assertEquals(900, e.code());
        assertEquals("INVALID_ARGUMENT", e.codeName());
        assertEquals("limit must be between 0 and 10000, got " + value, e.getMessage());
    }

    @Test
    void pagesOfTwoOverFiveChildren() {
        KvPage p1 = kv.listPage(G, "pages", null, 2);
        assertEquals(List.of("a", "b"), names(p1.nodes()));
        assertTrue(p1.more());
        assertEquals("pages.b", p1.nextAfterString());
        assertArrayEquals(b("pages.b"), p1.nextAfter());
        assertEquals("v1", p1.nodes().get(0).valueString());
        KvPage p2 = kv.listPage(G, "pages", p1.nextAfterString(), 2);
        assertEquals(List.of("c", "d"), names(p2.nodes()));
        assertTrue(p2.more());
        KvPage p3 = kv.listPage(G, b("pages"), p2.nextAfter(), 2);
        assertEquals(List.of("e"), names(p3.nodes()));
        assertFalse(p3.more());
        assertEquals(1, p3.size());
        // The empty string and an empty array are "from the first child", like null.
        assertEquals(p1, kv.listPage(G, "pages", "", 2));
        assertEquals(p1, kv.listPage(G, b("pages"), new byte[0], 2));
        assertThrows(UnsupportedOperationException.class, () -> p1.nodes().add(p1.nodes().get(0)));
    }

    @Test
    void startAfterFromTheMiddle() throws Exception {
        KvPage p = kv.listPage(G, "pages", "pages.c", 10);
        assertEquals(List.of("d", "e"), names(p.nodes()));
        assertFalse(p.more());
        // A key that is not a child: the page starts at the next one in key order.
        KvPage q = kv.listPage(G, "pages", "pages.bb", 2);
        assertEquals(List.of("c", "d"), names(q.nodes()));
        assertTrue(q.more());
        KvPage a = kv.listPageAsync(G, "pages", "pages.a", 3).get();
        assertEquals(List.of("b", "c", "d"), names(a.nodes()));
        assertTrue(a.more());
        KvPage ab = kv.listPageAsync(G, b("pages"), b("pages.d"), 3).get();
        assertEquals(List.of("e"), names(ab.nodes()));
        assertFalse(ab.more());
    }

    @Test
    void endOfDirectory() {
        KvPage last = kv.listPage(G, "pages", "pages.e", 2);
        assertTrue(last.nodes().isEmpty());
        assertFalse(last.more());
        assertNull(last.nextAfter());
        assertNull(last.nextAfterString());
        KvPage exact = kv.listPage(G, "pages", "pages.c", 3);
        assertEquals(List.of("d", "e"), names(exact.nodes()));
        assertFalse(exact.more());
        KvPage empty = kv.listPage(G, "emptydir", null, 0);
        assertTrue(empty.nodes().isEmpty());
        assertFalse(empty.more());
        assertFalse(kv.iterList(G, "emptydir", 2).iterator().hasNext());
        Iterator<KvNode> it = kv.iterList(G, "emptydir", 2).iterator();
        assertThrows(NoSuchElementException.class, it::next);
    }

    @Test
    void limitZeroIsTheServersDefault() {
        KvPage p = kv.listPage(G, BIG, null, 0);
        assertEquals(1_000, p.size());
        assertTrue(p.more());
        assertEquals(bigNames(0, 1_000), names(p.nodes()));
        KvPage next = kv.listPage(G, BIG, p.nextAfterString(), 0);
        assertEquals(bigNames(1_000, 2_000), names(next.nodes()));
        assertEquals(List.of("a", "b", "c", "d", "e"), names(kv.listPage(G, "pages", null, 0).nodes()));
    }

    @Test
    void limitsOutOfRangeAreRefusedBeforeSending() {
        for (int bad : new int[] {10_001, -1, Integer.MIN_VALUE, Integer.MAX_VALUE}) {
            badLimit(bad, () -> kv.listPage(G, "pages", null, bad));
            badLimit(bad, () -> kv.listPage(G, b("pages"), null, bad));
            badLimit(bad, () -> kv.listPageAsync(G, "pages", null, bad).join());
            badLimit(bad, () -> kv.listPageAsync(G, b("pages"), null, bad).join());
            badLimit(bad, () -> kv.iterList(G, "pages", bad));
        }
        // Nothing is sent: a client of nowhere refuses as fast.
        try (KvClient nowhere = new KvClient("127.0.0.1:1", 50)) {
            badLimit(10_001, () -> nowhere.listPage(G, "pages", null, 10_001));
        }
        assertEquals(10_000, KvClient.MAX_PAGE_LIMIT);
        KvPage max = kv.listPage(G, BIG, null, KvClient.MAX_PAGE_LIMIT);
        assertEquals(10_000, max.size());
        assertTrue(max.more());
        assertThrows(InvalidArgumentException.class, () -> kv.iterList(-1, "pages", 2));
    }

    @Test
    void theNativeLayerChecksTheLimitToo() {
        long c = Codec.handle(Native.clientNew(DongtingRuntime.defaultRuntime().handle(), b(cluster.addresses()), 10_000));
        try {
            for (int bad : new int[] {10_001, -1}) {
                badLimit(bad, () -> Codec.reply(Native.listPage(c, G, b("pages"), new byte[0], bad)));
            }
            InvalidArgumentException nul = assertThrows(
                    InvalidArgumentException.class, () -> Codec.reply(Native.listPage(c, G, b("pages"), null, 2)));
            assertEquals("startAfter is null", nul.getMessage());
            KvPage p = Codec.page(Codec.reply(Native.listPage(c, G, b("pages"), b("pages.a"), 1)));
            assertEquals(List.of("b"), names(p.nodes()));
            assertTrue(p.more());
        } finally {
            Codec.check(Native.clientClose(c));
        }
    }

    @Test
    void missingDirectoryAndNonDirectory() {
        NotFoundException nf = assertThrows(NotFoundException.class, () -> kv.listPage(G, "pages.none", null, 2));
        assertEquals("NOT_FOUND", nf.codeName());
        Throwable t = assertThrows(CompletionException.class, () -> kv.listPageAsync(G, "pages.none", null, 2).join());
        assertInstanceOf(NotFoundException.class, t.getCause());
        assertThrows(NotFoundException.class, () -> kv.iterList(G, "pages.none", 2).iterator().hasNext());
        assertThrows(NotDirException.class, () -> kv.listPage(G, "pages.a", null, 2));
        assertThrows(InvalidKeyException.class, () -> kv.listPage(G, "pages", "pages..a", 2));
        assertThrows(NullPointerException.class, () -> kv.listPage(G, (String) null, null, 2));
    }

    @Test
    void iterListWalksEveryPage() {
        assertEquals(List.of("a", "b", "c", "d", "e"), names(kv.iterList(G, "pages", 2)));
        assertEquals(List.of("a", "b", "c", "d", "e"), names(kv.iterList(G, b("pages"), 1)));
        Iterable<KvNode> all = kv.iterList(G, "pages", 0);
        // Each iterator starts again from the first child.
        assertEquals(names(all), names(all));
        assertEquals(bigNames(0, BIG_COUNT), names(kv.iterList(G, BIG, 5_000)));
    }

    @Test
    void listReturnsEveryChildOfALargeDirectoryInOrder() throws Exception {
        List<KvNode> all = kv.list(G, BIG);
        assertEquals(BIG_COUNT, all.size());
        assertEquals(bigNames(0, BIG_COUNT), names(all));
        assertEquals("v0", all.get(0).valueString());
        assertEquals("v1999", all.get(BIG_COUNT - 1).valueString());
        assertEquals(BIG_COUNT, kv.listAsync(G, BIG).get().size());
    }
}
