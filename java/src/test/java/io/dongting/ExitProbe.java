package io.dongting;

import java.nio.file.Path;

/** Started by {@link LifecycleTest}: leaves a server, a client and calls in flight at exit. */
public final class ExitProbe {
    private ExitProbe() {}

    /**
     * @param args the data directory
     */
    public static void main(String[] args) {
        LocalCluster cluster = LocalCluster.builder().nodes(1).dataDir(Path.of(args[0])).start();
        KvClient kv = cluster.client();
        kv.put(0, "k", "v");
        KvClient u = KvClient.builder("127.0.0.1:1").timeoutMillis(60_000).build();
        u.getAsync(0, "k");
        kv.putAsync(0, "k2", "v");
        System.out.println("probe: main returns");
    }
}
