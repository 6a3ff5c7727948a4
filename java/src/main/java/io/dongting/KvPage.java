package io.dongting;

import java.nio.charset.StandardCharsets;
import java.util.List;
import java.util.Objects;

/**
 * One page of a directory's children, as {@link KvClient#listPage(int, String, String, int)}
 * reads it. Immutable.
 *
 * @param nodes the page's children, in key order (unmodifiable)
 * @param more whether children follow the last one of this page (read them with
 *     {@link #nextAfter()} as the next page's {@code startAfter})
 */
public record KvPage(List<KvNode> nodes, boolean more) {
    /** The page; {@code nodes} is copied. */
    public KvPage {
        nodes = List.copyOf(Objects.requireNonNull(nodes, "nodes"));
    }

    /** @return the key the next page starts after: the last key of this page, null when empty */
    public byte[] nextAfter() {
        return nodes.isEmpty() ? null : nodes.get(nodes.size() - 1).key();
    }

    /** @return {@link #nextAfter()} as text, null when the page is empty */
    public String nextAfterString() {
        byte[] k = nextAfter();
        return k == null ? null : new String(k, StandardCharsets.UTF_8);
    }

    /** @return how many children the page holds */
    public int size() {
        return nodes.size();
    }

    @Override
    public String toString() {
        return "KvPage[" + nodes.size() + " nodes, more=" + more
                + (nodes.isEmpty() ? "" : ", last=" + nextAfterString()) + "]";
    }
}
