package io.dongting;

import java.util.List;

/**
 * An embedded server's status.
 *
 * @param nodeId this node's id
 * @param ready every peer passed the configuration check
 * @param groups the groups it hosts
 */
public record ServerStatus(int nodeId, boolean ready, List<GroupInfo> groups) {}
