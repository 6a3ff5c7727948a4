package io.dongting;

/**
 * A lock rule was broken (codes 1024-1027 and 1106): a lock under a temporary directory,
 * a child of a lock, a lock operation on another node kind, a value or directory operation on a
 * lock, or too many waiters. Lock handles are {@link DistributedLock}s.
 */
public class LockException extends KvException {
    private static final long serialVersionUID = 1L;

    /**
     * An exception with the given stable code, message, retry safety and leader hint.
     *
     * @param code the stable code
     * @param message a human-readable description
     * @param retryable whether sending the request again is safe
     * @param leaderHint {@code host:port} of the leader, or null
     */
    public LockException(int code, String message, boolean retryable, String leaderHint) {
        super(code, message, retryable, leaderHint);
    }
}
