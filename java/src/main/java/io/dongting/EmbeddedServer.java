package io.dongting;

import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Objects;

/**
 * A Dongting node running inside this JVM.
 *
 * <p>Start it from TOML configuration text ({@link #start(String)}) or a file
 * ({@link #startFile(Path)}); see docs/server.md for the settings. Starting blocks until
 * every group is open and the ports listen. Close it (try-with-resources) or call
 * {@link #stop}; a server still running when its runtime shuts down (at the latest at JVM
 * exit) is stopped then.
 */
public final class EmbeddedServer implements AutoCloseable {
    private final long handle;
    private final int nodeId;
    private final String serviceAddress;
    private final String replicateAddress;

    private EmbeddedServer(long handle) {
        this.handle = handle;
        Codec.Reader r = new Codec.Reader(Native.serverInfo(handle));
        DongtingException e = r.error();
        if (e != null) {
            throw e;
        }
        nodeId = r.i32();
        serviceAddress = r.text();
        replicateAddress = r.text();
    }

    /**
     * Starts a node on the default runtime.
     *
     * @param config TOML configuration text
     * @return the running server
     * @throws ConfigException when the configuration is invalid
     * @throws ServerStartException when the node cannot start
     */
    public static EmbeddedServer start(String config) {
        return start(config, DongtingRuntime.defaultRuntime());
    }

    /**
     * Starts a node on a runtime.
     *
     * @param config TOML configuration text
     * @param runtime the runtime to run on
     * @return the running server
     */
    public static EmbeddedServer start(String config, DongtingRuntime runtime) {
        Objects.requireNonNull(config, "config");
        return new EmbeddedServer(Codec.handle(Native.serverStart(runtime.handle(), Codec.utf8(config), false)));
    }

    /**
     * Starts a node from a TOML file on the default runtime; a relative {@code data_dir} is
     * taken relative to the file's directory.
     *
     * @param path the configuration file
     * @return the running server
     */
    public static EmbeddedServer startFile(Path path) {
        return startFile(path, DongtingRuntime.defaultRuntime());
    }

    /**
     * Starts a node from a TOML file on a runtime.
     *
     * @param path the configuration file
     * @param runtime the runtime to run on
     * @return the running server
     */
    public static EmbeddedServer startFile(Path path, DongtingRuntime runtime) {
        Objects.requireNonNull(path, "path");
        return new EmbeddedServer(
                Codec.handle(Native.serverStart(runtime.handle(), Codec.utf8(path.toString()), true)));
    }

    /** @return this node's id */
    public int nodeId() {
        return nodeId;
    }

    /** @return {@code ip:port} clients connect to */
    public String serviceAddress() {
        return serviceAddress;
    }

    /** @return {@code ip:port} of the replicate port (peers, admin tools) */
    public String replicateAddress() {
        return replicateAddress;
    }

    /** @return whether the node was stopped */
    public boolean isStopped() {
        Codec.Reader r = new Codec.Reader(Native.serverInfo(handle));
        if (r.error() != null) {
            return true;
        }
        r.i32();
        r.text();
        r.text();
        return r.bool();
    }

    /**
     * The node's metrics in the Prometheus text format, the same text its HTTP port's
     * {@code GET /metrics} serves (docs/monitoring.md), for an application to expose on its
     * own endpoint. Cheap, never blocks.
     */
    public String metrics() {
        Codec.Reader r = new Codec.Reader(Native.serverMetrics(handle));
        DongtingException e = r.error();
        if (e != null) {
            throw e;
        }
        return r.text();
    }

    /**
     * The node's status and each group's. Cheap: copies in-memory status.
     *
     * @return the status
     */
    public ServerStatus status() {
        Codec.Reader r = new Codec.Reader(Native.serverStatus(handle));
        DongtingException e = r.error();
        if (e != null) {
            throw e;
        }
        int id = r.i32();
        boolean ready = r.bool();
        int n = r.len();
        List<GroupInfo> groups = new ArrayList<>(n);
        for (int i = 0; i < n; i++) {
            groups.add(new GroupInfo(r.i32(), r.text(), r.i64(), r.i32(), r.i64(), r.i64(), r.bool()));
        }
        return new ServerStatus(id, ready, List.copyOf(groups));
    }

    /**
     * @param groupId a group id
     * @return this node's role in the group ({@code "leader"}, {@code "follower"}...), null when
     *     it does not host it
     */
    public String role(int groupId) {
        for (GroupInfo g : status().groups()) {
            if (g.groupId() == groupId) {
                return g.role();
            }
        }
        return null;
    }

    /**
     * @param groupId a group id
     * @return whether this node leads the group and has applied its term's first entry (it
     *     serves linearizable reads)
     */
    public boolean isLeader(int groupId) {
        for (GroupInfo g : status().groups()) {
            if (g.groupId() == groupId) {
                return "leader".equals(g.role()) && g.ready();
            }
        }
        return false;
    }

    /**
     * Stops gracefully: writes already accepted finish within {@code grace}, logs are synced
     * and closed, ports close. Idempotent. Blocks.
     *
     * @param grace how long accepted writes may take to finish (0 to one day)
     */
    public void stop(Duration grace) {
        Codec.check(Native.serverStop(handle, Args.millis("grace", grace, KvClient.MAX_TIMEOUT_MILLIS)));
    }

    /** {@link #stop(Duration)} with a one-second grace. */
    public void stop() {
        stop(Duration.ofSeconds(1));
    }

    /** Stops the node (if running) and releases its handle. */
    @Override
    public void close() {
        try {
            stop();
        } catch (ClosedException e) {
            // Already closed.
        } finally {
            Native.serverFree(handle);
        }
    }

    @Override
    public String toString() {
        return "EmbeddedServer[nodeId=" + nodeId + ", service=" + serviceAddress + "]";
    }
}
