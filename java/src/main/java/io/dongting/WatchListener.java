package io.dongting;

/**
 * Receives the events of a listener {@link KvWatch}. Calls run on the executor given to
 * {@link KvClient#watch(int, WatchListener, java.util.concurrent.Executor, String...)}, never on
 * an IO thread, one at a time and in raft index order: the next event is not handed over until
 * this call returned.
 */
@FunctionalInterface
public interface WatchListener {
    /**
     * One event. An exception thrown here is reported to the thread's uncaught exception
     * handler and does not stop the watch.
     *
     * @param event the change, or a compacted notice
     */
    void onEvent(WatchEvent event);

    /**
     * The watch ended on an error (a registration refused for good, the runtime shut down);
     * no event follows. Runs on the listener's executor. By default does nothing.
     *
     * @param error why the watch ended
     */
    default void onError(DongtingException error) {}
}
