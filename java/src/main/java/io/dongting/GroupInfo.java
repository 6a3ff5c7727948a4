package io.dongting;

/**
 * One raft group as an embedded server sees it.
 *
 * @param groupId the group id
 * @param role {@code leader}, {@code follower}, {@code candidate}, {@code observer},
 *     {@code stopped} or {@code unknown}
 * @param term the current term
 * @param leaderId the leader's node id, 0 when unknown
 * @param commitIndex highest committed index known
 * @param appliedIndex highest applied index
 * @param ready a leader is known and its term's first entry is applied here
 */
public record GroupInfo(
        int groupId, String role, long term, int leaderId, long commitIndex, long appliedIndex, boolean ready) {}
