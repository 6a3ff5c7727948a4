package io.dongting;

import java.nio.file.Path;
import java.util.concurrent.TimeUnit;

/** Started by {@link WatchLockTest}: leaves a listener watch and a blocked poll live at exit. */
public final class WatchExitProbe {
    private WatchExitProbe() {}

    /**
     * @param args the data directory
     */
    public static void main(String[] args) throws Exception {
        LocalCluster cluster = LocalCluster.builder().nodes(1).dataDir(Path.of(args[0])).start();
        KvClient kv = cluster.client();
        kv.mkdir(0, "exit");
        kv.watch(0, e -> System.out.println("probe: event " + e.keyString()), Runnable::run, "exit");
        KvWatch polled = kv.watch(0, "exit");
        Thread poller = new Thread(() -> {
            try {
                polled.poll(1, TimeUnit.HOURS);
            } catch (DongtingException e) {
                // The runtime shuts down at exit: the poll ends with it.
            }
        });
        poller.setDaemon(true);
        poller.start();
        kv.put(0, "exit.k", "v");
        Thread.sleep(200);
        System.out.println("probe: main returns");
    }
}
