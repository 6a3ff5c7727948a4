package io.dongting;

import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.Optional;

/**
 * Base of every exception this package throws (unchecked).
 *
 * <p>Each carries a stable numeric {@link #code()} shared by every language binding: 1-13
 * are RPC status codes, 900-999 errors of the client library itself, and 1000 + n the DtKV
 * error n. {@link #codeName()} gives its symbolic name ({@code "NOT_FOUND"},
 * {@code "TIMEOUT"}...). Catch the subclass for the condition you handle, e.g.
 * {@link NotFoundException} or {@link CasMismatchException}; {@link KvException} covers
 * every refusal by the store.
 */
public class DongtingException extends RuntimeException {
    private static final long serialVersionUID = 1L;

    /** DtKV error codes are this plus the DtKV code. */
    public static final int KV_CODE_BASE = 1000;

    private final int code;
    private final boolean retryable;
    private final String leaderHint;

    /**
     * An exception with the given stable code, message, retry safety and leader hint.
     *
     * @param code the stable code
     * @param message a human-readable description (no stability promise)
     * @param retryable whether sending the request again is safe
     * @param leaderHint {@code host:port} of the leader, or null
     */
    public DongtingException(int code, String message, boolean retryable, String leaderHint) {
        super(message);
        this.code = code;
        this.retryable = retryable;
        this.leaderHint = leaderHint;
    }

    /** @return the stable numeric code */
    public int code() {
        return code;
    }

    /** @return the symbolic name of the code, e.g. {@code "NOT_FOUND"}, or {@code "UNKNOWN"} */
    public String codeName() {
        return codeName(code);
    }

    /**
     * @return true when the server guarantees the request was not executed, so sending it
     *     again (also to another node) is safe even for a write
     */
    public boolean retryable() {
        return retryable;
    }

    /** @return {@code host:port} of the group's leader after a NOT_RAFT_LEADER answer naming one */
    public Optional<String> leaderHint() {
        return Optional.ofNullable(leaderHint);
    }

    /**
     * The symbolic name of a stable code.
     *
     * @param code a stable code
     * @return its name, e.g. {@code "CAS_MISMATCH"}, or {@code "UNKNOWN"}
     */
    public static String codeName(int code) {
        return Codec.text(Native.codeName(code));
    }

    @Override
    public String toString() {
        return getClass().getName() + ": " + getMessage() + " (" + codeName() + ", code " + code + ")";
    }

    /**
     * Every error code of the native library, by symbolic name, in code order; {@link ErrorCode}
     * names the same codes.
     *
     * @return an unmodifiable map from name ({@code "NOT_FOUND"}) to code ({@code 1002})
     */
    public static Map<String, Integer> errorCodes() {
        Map<String, Integer> codes = new LinkedHashMap<>();
        for (String line : Codec.text(Native.errorCodes()).split("\n")) {
            int eq = line.indexOf('=');
            if (eq > 0) {
                codes.put(line.substring(0, eq), Integer.parseInt(line.substring(eq + 1)));
            }
        }
        return Collections.unmodifiableMap(codes);
    }

    /**
     * The exception for a stable code: the most specific subclass, else {@link KvException}
     * for DtKV codes, else this class.
     *
     * @param code the stable code
     * @param message the description
     * @param retryable whether a retry is safe
     * @param leaderHint the leader's {@code host:port}, or null
     * @return the exception (not thrown)
     */
    public static DongtingException fromCode(int code, String message, boolean retryable, String leaderHint) {
        switch (code) {
            case 1:
            case 900:
                return new InvalidArgumentException(code, message, retryable, leaderHint);
            case 4:
            case 5:
            case 6:
            case 9:
                return new UnavailableException(code, message, retryable, leaderHint);
            case 7:
                return new NotLeaderException(code, message, retryable, leaderHint);
            case 8:
                return new GroupNotFoundException(code, message, retryable, leaderHint);
            case 10:
                return new DtTimeoutException(code, message, retryable, leaderHint);
            case 12:
                return new NetworkException(code, message, retryable, leaderHint);
            case 13:
                return new ClosedException(code, message, retryable, leaderHint);
            case 901:
                return new CancelledException(code, message, retryable, leaderHint);
            case 902:
                return new RuntimeShutDownException(code, message, retryable, leaderHint);
            case 903:
                return new ForkedException(code, message, retryable, leaderHint);
            case 905:
                return new ConfigException(code, message, retryable, leaderHint);
            case 906:
                return new ServerStartException(code, message, retryable, leaderHint);
            case 911:
                return new UnknownOutcomeException(code, message, retryable, leaderHint);
            case KV_CODE_BASE + 2:
                return new NotFoundException(code, message, retryable, leaderHint);
            case KV_CODE_BASE + 4:
                return new IsDirException(code, message, retryable, leaderHint);
            case KV_CODE_BASE + 5:
                return new NotDirException(code, message, retryable, leaderHint);
            case KV_CODE_BASE + 6:
                return new ParentNotDirException(code, message, retryable, leaderHint);
            case KV_CODE_BASE + 7:
            case KV_CODE_BASE + 11:
                return new InvalidKeyException(code, message, retryable, leaderHint);
            case KV_CODE_BASE + 8:
            case KV_CODE_BASE + 12:
                return new InvalidValueException(code, message, retryable, leaderHint);
            case KV_CODE_BASE + 9:
                return new ParentNotFoundException(code, message, retryable, leaderHint);
            case KV_CODE_BASE + 10:
                return new DirNotEmptyException(code, message, retryable, leaderHint);
            case KV_CODE_BASE + 14:
                return new CasMismatchException(code, message, retryable, leaderHint);
            case KV_CODE_BASE + 18:
                return new NotOwnerException(code, message, retryable, leaderHint);
            case KV_CODE_BASE + 19:
                return new NotTempNodeException(code, message, retryable, leaderHint);
            case KV_CODE_BASE + 20:
                return new IsTempNodeException(code, message, retryable, leaderHint);
            case KV_CODE_BASE + 22:
                return new InvalidTtlException(code, message, retryable, leaderHint);
            case KV_CODE_BASE + 101:
                return new TooManyKeysException(code, message, retryable, leaderHint);
            case KV_CODE_BASE + 24:
            case KV_CODE_BASE + 25:
            case KV_CODE_BASE + 26:
            case KV_CODE_BASE + 27:
            case KV_CODE_BASE + 106:
                return new LockException(code, message, retryable, leaderHint);
            case KV_CODE_BASE + 104:
                return new HistoryCompactedException(code, message, retryable, leaderHint);
            default:
                return code > KV_CODE_BASE
                        ? new KvException(code, message, retryable, leaderHint)
                        : new DongtingException(code, message, retryable, leaderHint);
        }
    }
}
