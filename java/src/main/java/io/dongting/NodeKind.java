package io.dongting;

/** What a node is. The ordinals are the stable numbers every binding shares. */
public enum NodeKind {
    /** No node (a missing key in {@link KvClient#batchGet}). */
    ABSENT,
    /** A value. */
    VALUE,
    /** A directory. */
    DIR,
    /** A lock. */
    LOCK;

    static NodeKind of(int n) {
        NodeKind[] all = values();
        return n >= 0 && n < all.length ? all[n] : ABSENT;
    }
}
