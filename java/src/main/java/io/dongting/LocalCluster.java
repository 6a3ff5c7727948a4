package io.dongting;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.List;
import java.util.Objects;
import java.util.stream.Collectors;
import java.util.stream.Stream;

/**
 * Nodes on loopback in this JVM, each hosting every group, with fast elections: for tests and
 * development, not production. Data lives in a temporary directory removed by {@link #close()}
 * unless one is given.
 *
 * <pre>{@code
 * try (LocalCluster cluster = LocalCluster.start(3);
 *      KvClient kv = cluster.client()) {
 *     kv.put(0, "k", "v");
 * }
 * }</pre>
 */
public final class LocalCluster implements AutoCloseable {
    private final List<EmbeddedServer> servers = new ArrayList<>();
    private final int[] groups;
    private final Path dataDir;
    private final boolean tempDir;
    private final DongtingRuntime runtime;

    private LocalCluster(int nodes, int[] groups, Path dataDir, DongtingRuntime runtime, Duration timeout) {
        if (groups.length == 0) {
            throw new InvalidArgumentException(900, "at least one group is needed", false, null);
        }
        for (int g : groups) {
            Args.range("groups", g, 0, Integer.MAX_VALUE);
        }
        Args.millis("timeout", timeout, KvClient.MAX_TIMEOUT_MILLIS);
        this.groups = groups.clone();
        this.runtime = runtime != null ? runtime : DongtingRuntime.defaultRuntime();
        this.tempDir = dataDir == null;
        try {
            this.dataDir = dataDir != null ? dataDir : Files.createTempDirectory("dongting-");
        } catch (IOException e) {
            throw new UncheckedIOException("cannot create a data directory", e);
        }
        try {
            for (String config : configs(nodes, this.groups, this.dataDir)) {
                servers.add(EmbeddedServer.start(config, this.runtime));
            }
            waitReady(timeout);
        } catch (RuntimeException | Error e) {
            close();
            throw e;
        }
    }

    /**
     * Starts {@code nodes} nodes hosting {@code groups} (default: group 0) on the default
     * runtime and waits up to 30 s until every group has a leader.
     *
     * @param nodes how many nodes (1 to 9)
     * @param groups the raft group ids
     * @return the running cluster
     */
    public static LocalCluster start(int nodes, int... groups) {
        return builder().nodes(nodes).groups(groups.length == 0 ? new int[] {0} : groups).start();
    }

    /**
     * TOML configurations of a loopback cluster (what {@link #start} runs), to start or write
     * out the nodes yourself: free ports are picked now, data under {@code dataDir/node<id>},
     * fast elections (for tests and development).
     *
     * @param nodes how many nodes (1 to 9)
     * @param groups the raft group ids every node hosts
     * @param dataDir the data directory
     * @return one configuration per node, in node id order
     */
    public static List<String> configs(int nodes, int[] groups, Path dataDir) {
        Objects.requireNonNull(groups, "groups");
        Objects.requireNonNull(dataDir, "dataDir");
        Codec.Reader r = new Codec.Reader(Native.localClusterConfigs(nodes, groups, Codec.utf8(dataDir.toString())));
        DongtingException e = r.error();
        if (e != null) {
            throw e;
        }
        int n = r.len();
        List<String> out = new ArrayList<>(n);
        for (int i = 0; i < n; i++) {
            out.add(r.text());
        }
        return List.copyOf(out);
    }

    /** @return a builder with 3 nodes, group 0, a temporary directory and a 30 s wait */
    public static Builder builder() {
        return new Builder();
    }

    /** Options of a {@link LocalCluster}. */
    public static final class Builder {
        private int nodes = 3;
        private int[] groups = {0};
        private Path dataDir;
        private DongtingRuntime runtime;
        private Duration timeout = Duration.ofSeconds(30);

        private Builder() {}

        /** @param nodes how many nodes (1 to 9) @return this builder */
        public Builder nodes(int nodes) {
            this.nodes = nodes;
            return this;
        }

        /** @param groups the raft group ids @return this builder */
        public Builder groups(int... groups) {
            this.groups = Objects.requireNonNull(groups, "groups").clone();
            return this;
        }

        /** @param dataDir where data lives (kept after close) @return this builder */
        public Builder dataDir(Path dataDir) {
            this.dataDir = Objects.requireNonNull(dataDir, "dataDir");
            return this;
        }

        /** @param runtime the runtime to run on @return this builder */
        public Builder runtime(DongtingRuntime runtime) {
            this.runtime = Objects.requireNonNull(runtime, "runtime");
            return this;
        }

        /** @param timeout how long to wait for leaders @return this builder */
        public Builder timeout(Duration timeout) {
            this.timeout = Objects.requireNonNull(timeout, "timeout");
            return this;
        }

        /** @return the started cluster, every group with a leader */
        public LocalCluster start() {
            return new LocalCluster(nodes, groups, dataDir, runtime, timeout);
        }
    }

    /** @return the nodes, in node id order */
    public List<EmbeddedServer> servers() {
        return List.copyOf(servers);
    }

    /** @return the service addresses of the running nodes, comma-separated */
    public String addresses() {
        return servers.stream()
                .filter(s -> !s.isStopped())
                .map(EmbeddedServer::serviceAddress)
                .collect(Collectors.joining(","));
    }

    /** @return the data directory */
    public Path dataDir() {
        return dataDir;
    }

    /**
     * @param groupId a group id
     * @return the node leading the group now, or null
     */
    public EmbeddedServer leader(int groupId) {
        for (EmbeddedServer s : servers) {
            if (!s.isStopped() && s.isLeader(groupId)) {
                return s;
            }
        }
        return null;
    }

    /**
     * Waits until every group has a leader.
     *
     * @param timeout how long to wait
     * @throws DtTimeoutException when a group has none by then
     */
    public void waitReady(Duration timeout) {
        long deadline = System.nanoTime() + Args.millis("timeout", timeout, KvClient.MAX_TIMEOUT_MILLIS) * 1_000_000L;
        while (true) {
            boolean all = true;
            for (int g : groups) {
                all &= leader(g) != null;
            }
            if (all) {
                return;
            }
            if (System.nanoTime() > deadline) {
                throw new DtTimeoutException(10, "no leader for every group within " + timeout, false, null);
            }
            try {
                Thread.sleep(20);
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
                throw new CancelledException(901, "interrupted while waiting for leaders", false, null);
            }
        }
    }

    /** @return a client of this cluster on its runtime, with the default timeout */
    public KvClient client() {
        return KvClient.builder(addresses()).runtime(runtime).build();
    }

    /** @return a builder for a client of this cluster on its runtime */
    public KvClient.Builder clientBuilder() {
        return KvClient.builder(addresses()).runtime(runtime);
    }

    /** Stops every node and removes a temporary data directory. */
    @Override
    public void close() {
        for (EmbeddedServer s : servers) {
            try {
                s.close();
            } catch (RuntimeException e) {
                // Stop the others too.
            }
        }
        if (tempDir && dataDir != null) {
            try (Stream<Path> paths = Files.walk(dataDir)) {
                paths.sorted(Comparator.reverseOrder()).forEach(p -> p.toFile().delete());
            } catch (IOException e) {
                // Best effort: a temporary directory.
            }
        }
    }
}
