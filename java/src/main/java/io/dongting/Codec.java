package io.dongting;

import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.Collections;
import java.util.List;

/**
 * Reads the results the native library encodes (little-endian): a tag byte, 0 for success and 1
 * for an error ({@code code, retryable, message, [leader]}), then the payload of the call.
 */
final class Codec {
    private static final int TAG_OK = 0;
    /** The kind byte of a watch read's result. */
    private static final int KIND_WATCH_EVENT = 0x80;

    private Codec() {}

    /** The decoded success of a KvClient call (see the SDK's Reply). */
    static final class Reply {
        long index;
        boolean created;
        long deadlineMillis;
        List<KvNode> nodes;
        int[] codes;
        long token;
        boolean more;
        /** A watch read: the event (null when none arrived; its group is set by the watch). */
        RawEvent event;
        /** A watch read: the index the watch is complete up to. */
        long lastIndex;
    }

    /** A watch item as read, before its group is known. */
    record RawEvent(WatchEvent.Kind kind, long index, byte[] key, NodeKind state, byte[] value, long floor) {}

    /** A cursor over one encoded buffer. */
    static final class Reader {
        private final ByteBuffer b;

        Reader(byte[] bytes) {
            b = ByteBuffer.wrap(bytes).order(ByteOrder.LITTLE_ENDIAN);
        }

        int u8() {
            return b.get() & 0xff;
        }

        boolean bool() {
            return b.get() != 0;
        }

        int i32() {
            return b.getInt();
        }

        long i64() {
            return b.getLong();
        }

        int len() {
            return b.getInt();
        }

        byte[] bytes() {
            byte[] out = new byte[len()];
            b.get(out);
            return out;
        }

        String text() {
            int n = len();
            String s = new String(b.array(), b.position(), n, StandardCharsets.UTF_8);
            b.position(b.position() + n);
            return s;
        }

        /** Reads the tag; on an error reads and returns the exception, else null. */
        DongtingException error() {
            if (u8() == TAG_OK) {
                return null;
            }
            int code = i32();
            boolean retryable = bool();
            String message = text();
            String leader = bool() ? text() : null;
            return DongtingException.fromCode(code, message, retryable, leader);
        }

        /** One result: the reply, or the error as an exception (returned, not thrown). */
        Object result() {
            DongtingException e = error();
            if (e != null) {
                return e;
            }
            Reply r = new Reply();
            // The reply kind: each call knows which it asked for, but a watch read differs.
            if (u8() == KIND_WATCH_EVENT) {
                r.nodes = Collections.emptyList();
                r.codes = new int[0];
                r.lastIndex = i64();
                if (bool()) {
                    WatchEvent.Kind kind = u8() == 1 ? WatchEvent.Kind.COMPACTED : WatchEvent.Kind.CHANGED;
                    long index = i64();
                    byte[] key = bytes();
                    NodeKind state = NodeKind.of(u8());
                    byte[] value = bytes();
                    long floor = i64();
                    r.event = new RawEvent(kind, index, key, state, value, floor);
                }
                return r;
            }
            r.index = i64();
            r.created = bool();
            r.deadlineMillis = i64();
            int n = len();
            if (n == 0) {
                r.nodes = Collections.emptyList();
            } else {
                List<KvNode> nodes = new ArrayList<>(n);
                for (int i = 0; i < n; i++) {
                    NodeKind kind = NodeKind.of(u8());
                    long ci = i64();
                    long ct = i64();
                    long ui = i64();
                    long ut = i64();
                    long td = i64();
                    long to = i64();
                    byte[] key = bytes();
                    byte[] value = bytes();
                    nodes.add(new KvNode(key, value, kind, ci, ct, ui, ut, td, to));
                }
                r.nodes = nodes;
            }
            int[] codes = new int[len()];
            for (int i = 0; i < codes.length; i++) {
                codes[i] = i32();
            }
            r.codes = codes;
            r.token = i64();
            r.more = bool();
            return r;
        }
    }

    /** The event of a watch read, null when none arrived. */
    static WatchEvent event(int groupId, Reply r) {
        RawEvent e = r.event;
        if (e == null) {
            return null;
        }
        return new WatchEvent(groupId, e.kind(), e.index(), e.key(), e.state(), e.value(), e.floor());
    }

    /** The u64 payload of a successful call, or throws the error. */
    static long u64(byte[] encoded) {
        return handle(encoded);
    }

    static String text(byte[] utf8) {
        return new String(utf8, StandardCharsets.UTF_8);
    }

    static byte[] utf8(String s) {
        return s.getBytes(StandardCharsets.UTF_8);
    }

    /** Throws the encoded error, if it is one. */
    static void check(byte[] encoded) {
        DongtingException e = new Reader(encoded).error();
        if (e != null) {
            throw e;
        }
    }

    /** The handle of a successful create, or throws the error. */
    static long handle(byte[] encoded) {
        Reader r = new Reader(encoded);
        DongtingException e = r.error();
        if (e != null) {
            throw e;
        }
        return r.i64();
    }

    /** The reply of a blocking call, or throws its error. */
    static Reply reply(byte[] encoded) {
        Object o = new Reader(encoded).result();
        if (o instanceof DongtingException e) {
            throw e;
        }
        return (Reply) o;
    }

    static WriteResult write(Reply r) {
        return new WriteResult(r.index, r.created, r.deadlineMillis, r.codes);
    }

    static KvNode node(Reply r) {
        return r.nodes.isEmpty() ? null : r.nodes.get(0);
    }

    static List<KvNode> list(Reply r) {
        return Collections.unmodifiableList(r.nodes);
    }

    static KvPage page(Reply r) {
        return new KvPage(r.nodes, r.more);
    }

    /** One node per key, null when absent; a per-key error throws. */
    static List<KvNode> batchGet(Reply r) {
        List<KvNode> out = new ArrayList<>(r.nodes.size());
        for (int i = 0; i < r.nodes.size(); i++) {
            KvNode n = r.nodes.get(i);
            int code = i < r.codes.length ? r.codes[i] : 0;
            if (code != 0) {
                throw DongtingException.fromCode(
                        code, "batchGet of " + n.keyString() + " failed: " + DongtingException.codeName(code), false, null);
            }
            out.add(n.kind() == NodeKind.ABSENT ? null : n);
        }
        return Collections.unmodifiableList(out);
    }
}
