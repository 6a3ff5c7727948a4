package io.dongting;

/**
 * The server is starting, stopping or overloaded, or the group is stopped
 * (codes 4, 5, 6, 9); retryable.
 */
public class UnavailableException extends DongtingException {
    private static final long serialVersionUID = 1L;

    /**
     * An exception with the given stable code, message, retry safety and leader hint.
     *
     * @param code the stable code
     * @param message a human-readable description
     * @param retryable whether sending the request again is safe
     * @param leaderHint {@code host:port} of the leader, or null
     */
    public UnavailableException(int code, String message, boolean retryable, String leaderHint) {
        super(code, message, retryable, leaderHint);
    }
}
