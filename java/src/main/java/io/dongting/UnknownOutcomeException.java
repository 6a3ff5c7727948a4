package io.dongting;

/**
 * A write failed after an attempt of it may have reached a server: it may or may
 * not have been applied (code 911, never retryable; the message names the last
 * failure). Read the keys to learn what happened; sending the write again is a
 * new write.
 */
public class UnknownOutcomeException extends DongtingException {
    private static final long serialVersionUID = 1L;

    /**
     * An exception with the given stable code, message, retry safety and leader hint.
     *
     * @param code the stable code
     * @param message a human-readable description
     * @param retryable whether sending the request again is safe
     * @param leaderHint {@code host:port} of the leader, or null
     */
    public UnknownOutcomeException(int code, String message, boolean retryable, String leaderHint) {
        super(code, message, retryable, leaderHint);
    }
}
