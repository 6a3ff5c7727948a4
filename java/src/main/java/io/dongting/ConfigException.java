package io.dongting;

/**
 * A server configuration is invalid (code 905); the message names the field.
 */
public class ConfigException extends DongtingException {
    private static final long serialVersionUID = 1L;

    /**
     * An exception with the given stable code, message, retry safety and leader hint.
     *
     * @param code the stable code
     * @param message a human-readable description
     * @param retryable whether sending the request again is safe
     * @param leaderHint {@code host:port} of the leader, or null
     */
    public ConfigException(int code, String message, boolean retryable, String leaderHint) {
        super(code, message, retryable, leaderHint);
    }
}
