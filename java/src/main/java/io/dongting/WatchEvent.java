package io.dongting;

import java.util.Arrays;

/**
 * One item of a {@link KvWatch}: a change of a watched key, or a notice that the server's history
 * was compacted past what the watch had seen.
 *
 * <p>Changed: {@link #raftIndex()} is the raft index of the write, {@link #key()} the key,
 * {@link #state()} its kind after the write ({@link NodeKind#ABSENT} when removed) and
 * {@link #value()} its value (empty unless a value). Events come in raft index order, each once.
 *
 * <p>Compacted: events the watch had not yet seen are gone; re-read the watched keys
 * (a linearizable read) and go on: later events have indexes above {@link #raftIndex()}.
 * {@link #historyFloor()} is where the server's history now starts.
 */
public final class WatchEvent {
    /** What a {@link WatchEvent} reports. */
    public enum Kind {
        /** A watched key changed. */
        CHANGED,
        /** The history the watch needed was compacted; re-read the keys. */
        COMPACTED
    }

    private final int groupId;
    private final Kind kind;
    private final long raftIndex;
    private final byte[] key;
    private final NodeKind state;
    private final byte[] value;
    private final long historyFloor;

    WatchEvent(int groupId, Kind kind, long raftIndex, byte[] key, NodeKind state, byte[] value, long historyFloor) {
        this.groupId = groupId;
        this.kind = kind;
        this.raftIndex = raftIndex;
        this.key = key;
        this.state = state;
        this.value = value;
        this.historyFloor = historyFloor;
    }

    /** @return the raft group of the watch */
    public int groupId() {
        return groupId;
    }

    /** @return changed or compacted */
    public Kind kind() {
        return kind;
    }

    /** @return changed: the raft index of the write; compacted: the index events continue after */
    public long raftIndex() {
        return raftIndex;
    }

    /** @return the key as UTF-8 (a copy; empty for a compacted event) */
    public byte[] key() {
        return key.clone();
    }

    /** @return the key (empty for a compacted event) */
    public String keyString() {
        return Codec.text(key);
    }

    /** @return the key's kind after the write ({@link NodeKind#ABSENT}: removed or compacted) */
    public NodeKind state() {
        return state;
    }

    /** @return the value after the write (a copy; empty unless {@link #state()} is a value) */
    public byte[] value() {
        return value.clone();
    }

    /** @return the value as UTF-8 text */
    public String valueString() {
        return Codec.text(value);
    }

    /** @return compacted: the lowest index the server's history resumes after; else 0 */
    public long historyFloor() {
        return historyFloor;
    }

    @Override
    public String toString() {
        if (kind == Kind.COMPACTED) {
            return "WatchEvent[compacted, resume after " + raftIndex + ", history floor " + historyFloor + "]";
        }
        return "WatchEvent[" + raftIndex + " " + keyString() + " " + state + " (" + value.length + " bytes)]";
    }

    @Override
    public boolean equals(Object o) {
        return o instanceof WatchEvent e
                && groupId == e.groupId
                && kind == e.kind
                && raftIndex == e.raftIndex
                && state == e.state
                && historyFloor == e.historyFloor
                && Arrays.equals(key, e.key)
                && Arrays.equals(value, e.value);
    }

    @Override
    public int hashCode() {
        return Long.hashCode(raftIndex) * 31 + Arrays.hashCode(key);
    }
}
