package io.dongting;

/**
 * A watch asked to resume from an index older than the retained event history
 * (code 1104): re-read the keys. Watches themselves are not in this package yet.
 */
public class HistoryCompactedException extends KvException {
    private static final long serialVersionUID = 1L;

    /**
     * An exception with the given stable code, message, retry safety and leader hint.
     *
     * @param code the stable code
     * @param message a human-readable description
     * @param retryable whether sending the request again is safe
     * @param leaderHint {@code host:port} of the leader, or null
     */
    public HistoryCompactedException(int code, String message, boolean retryable, String leaderHint) {
        super(code, message, retryable, leaderHint);
    }
}
