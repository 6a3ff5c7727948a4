package io.dongting;

import java.util.Arrays;

/**
 * The answer to a write.
 *
 * @param index raft index the write was applied at
 * @param created put, mkdir: whether the node was created (false: it existed)
 * @param deadlineMillis putTemp, makeTempDir, updateTtl: the new expiry deadline (leader wall
 *     clock)
 * @param codes batchPut, batchRemove: one stable code per key in request order (0: done); empty
 *     otherwise
 */
public record WriteResult(long index, boolean created, long deadlineMillis, int[] codes) {
    @Override
    public boolean equals(Object o) {
        return o instanceof WriteResult w
                && index == w.index
                && created == w.created
                && deadlineMillis == w.deadlineMillis
                && Arrays.equals(codes, w.codes);
    }

    @Override
    public int hashCode() {
        return Long.hashCode(index) * 31 + Arrays.hashCode(codes);
    }

    @Override
    public String toString() {
        return "WriteResult[index=" + index + ", created=" + created + ", deadlineMillis=" + deadlineMillis
                + ", codes=" + Arrays.toString(codes) + "]";
    }
}
