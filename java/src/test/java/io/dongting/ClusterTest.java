package io.dongting;

import org.junit.jupiter.api.AfterAll;

/** A 3-node embedded cluster and a client of it, shared by the tests of one class. */
abstract class ClusterTest {
    static final int G = 0;
    static LocalCluster cluster;
    static KvClient kv;

    /** Starts the cluster and a client whose calls time out after {@code timeoutMillis}. */
    static void startCluster(long timeoutMillis) {
        cluster = LocalCluster.start(3);
        kv = cluster.clientBuilder().timeoutMillis(timeoutMillis).build();
    }

    @AfterAll
    static void stopCluster() {
        if (kv != null) {
            kv.close();
            kv = null;
        }
        if (cluster != null) {
            cluster.close();
            cluster = null;
        }
    }
}
