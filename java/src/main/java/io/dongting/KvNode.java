package io.dongting;

import java.nio.charset.StandardCharsets;
import java.util.Arrays;

/**
 * One DtKV node as read.
 *
 * @param key the full key ({@code a.b.c}) as UTF-8
 * @param value the value (empty for directories)
 * @param kind value, directory or lock
 * @param createIndex raft index of the creation
 * @param createTimeMillis leader wall-clock milliseconds of the creation
 * @param updateIndex raft index of the last change
 * @param updateTimeMillis leader wall-clock milliseconds of the last change
 * @param ttlDeadlineMillis a temporary node's expiry deadline (leader wall clock), else 0
 * @param ttlOwner a temporary node's owning client id, else 0
 */
public record KvNode(
        byte[] key,
        byte[] value,
        NodeKind kind,
        long createIndex,
        long createTimeMillis,
        long updateIndex,
        long updateTimeMillis,
        long ttlDeadlineMillis,
        long ttlOwner) {

    /** @return the key as text */
    public String keyString() {
        return new String(key, StandardCharsets.UTF_8);
    }

    /** @return the value decoded as UTF-8 */
    public String valueString() {
        return new String(value, StandardCharsets.UTF_8);
    }

    /** @return the last segment of the key ({@code c} of {@code a.b.c}) */
    public String name() {
        String k = keyString();
        return k.substring(k.lastIndexOf('.') + 1);
    }

    /** @return whether this is a directory */
    public boolean isDir() {
        return kind == NodeKind.DIR;
    }

    /** @return whether this is a value */
    public boolean isValue() {
        return kind == NodeKind.VALUE;
    }

    @Override
    public boolean equals(Object o) {
        return o instanceof KvNode n
                && Arrays.equals(key, n.key)
                && Arrays.equals(value, n.value)
                && kind == n.kind
                && createIndex == n.createIndex
                && createTimeMillis == n.createTimeMillis
                && updateIndex == n.updateIndex
                && updateTimeMillis == n.updateTimeMillis
                && ttlDeadlineMillis == n.ttlDeadlineMillis
                && ttlOwner == n.ttlOwner;
    }

    @Override
    public int hashCode() {
        return 31 * Arrays.hashCode(key) + Long.hashCode(updateIndex);
    }

    @Override
    public String toString() {
        return "KvNode[" + keyString() + ", " + kind + ", " + value.length + " bytes, updateIndex=" + updateIndex + "]";
    }
}
