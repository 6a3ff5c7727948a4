package io.dongting;

/**
 * Every stable error code by its symbolic name (a {@link DongtingException#codeName()}): 1-13
 * RPC status codes, 900-999 codes of the client library, 1000 + n the DtKV code n. {@link
 * DongtingException#errorCodes()} lists the native library's table.
 */
public final class ErrorCode {
    private ErrorCode() {}

    /** RPC status 1. */
    public static final int CLIENT_ERROR = 1;

    /** RPC status 2. */
    public static final int SYS_ERROR = 2;

    /** RPC status 3. */
    public static final int COMMAND_NOT_SUPPORTED = 3;

    /** RPC status 4. */
    public static final int NOT_INIT = 4;

    /** RPC status 5. */
    public static final int STOPPING = 5;

    /** RPC status 6. */
    public static final int FLOW_CONTROL = 6;

    /** RPC status 7. */
    public static final int NOT_RAFT_LEADER = 7;

    /** RPC status 8. */
    public static final int RAFT_GROUP_NOT_FOUND = 8;

    /** RPC status 9. */
    public static final int RAFT_GROUP_STOPPED = 9;

    /** RPC status 10. */
    public static final int TIMEOUT = 10;

    /** RPC status 11. */
    public static final int PROTOCOL_ERROR = 11;

    /** RPC status 12. */
    public static final int NETWORK_ERROR = 12;

    /** RPC status 13. */
    public static final int CLOSED = 13;

    /** An argument is invalid; nothing was sent. */
    public static final int INVALID_ARGUMENT = 900;

    /** The call was cancelled. */
    public static final int CANCELLED = 901;

    /** The runtime was shut down before or while the call ran. */
    public static final int RUNTIME_SHUT_DOWN = 902;

    /** The runtime belongs to another process. */
    public static final int FORKED = 903;

    /** The library does not provide the API version asked for. */
    public static final int UNSUPPORTED_API_VERSION = 904;

    /** A server configuration is invalid. */
    public static final int CONFIG_ERROR = 905;

    /** An embedded server could not start. */
    public static final int SERVER_START_FAILED = 906;

    /** Threads or memory could not be obtained. */
    public static final int RESOURCE = 907;

    /** The result is not of the kind asked for. */
    public static final int WRONG_RESULT_KIND = 908;

    /** The operation has not completed yet. */
    public static final int PENDING = 909;

    /** The embedded server was already stopped. */
    public static final int SERVER_STOPPED = 910;

    /** A write that may or may not have been applied. */
    public static final int UNKNOWN_OUTCOME = 911;

    /** DtKV code 1. */
    public static final int INTERNAL = DongtingException.KV_CODE_BASE + 1;

    /** DtKV code 2. */
    public static final int NOT_FOUND = DongtingException.KV_CODE_BASE + 2;

    /** DtKV code 4. */
    public static final int IS_DIR = DongtingException.KV_CODE_BASE + 4;

    /** DtKV code 5. */
    public static final int NOT_DIR = DongtingException.KV_CODE_BASE + 5;

    /** DtKV code 6. */
    public static final int PARENT_NOT_DIR = DongtingException.KV_CODE_BASE + 6;

    /** DtKV code 7. */
    public static final int INVALID_KEY = DongtingException.KV_CODE_BASE + 7;

    /** DtKV code 8. */
    public static final int INVALID_VALUE = DongtingException.KV_CODE_BASE + 8;

    /** DtKV code 9. */
    public static final int PARENT_NOT_FOUND = DongtingException.KV_CODE_BASE + 9;

    /** DtKV code 10. */
    public static final int DIR_NOT_EMPTY = DongtingException.KV_CODE_BASE + 10;

    /** DtKV code 11. */
    public static final int KEY_TOO_LONG = DongtingException.KV_CODE_BASE + 11;

    /** DtKV code 12. */
    public static final int VALUE_TOO_LARGE = DongtingException.KV_CODE_BASE + 12;

    /** DtKV code 14. */
    public static final int CAS_MISMATCH = DongtingException.KV_CODE_BASE + 14;

    /** DtKV code 18. */
    public static final int NOT_OWNER = DongtingException.KV_CODE_BASE + 18;

    /** DtKV code 19. */
    public static final int NOT_TEMP_NODE = DongtingException.KV_CODE_BASE + 19;

    /** DtKV code 20. */
    public static final int IS_TEMP_NODE = DongtingException.KV_CODE_BASE + 20;

    /** DtKV code 22. */
    public static final int INVALID_TTL = DongtingException.KV_CODE_BASE + 22;

    /** DtKV code 24. */
    public static final int UNDER_TEMP_DIR = DongtingException.KV_CODE_BASE + 24;

    /** DtKV code 25. */
    public static final int PARENT_IS_LOCK = DongtingException.KV_CODE_BASE + 25;

    /** DtKV code 26. */
    public static final int NOT_LOCK_NODE = DongtingException.KV_CODE_BASE + 26;

    /** DtKV code 27. */
    public static final int IS_LOCK = DongtingException.KV_CODE_BASE + 27;

    /** DtKV code 100. */
    public static final int INVALID_COMMAND = DongtingException.KV_CODE_BASE + 100;

    /** DtKV code 101. */
    public static final int TOO_MANY_KEYS = DongtingException.KV_CODE_BASE + 101;

    /** DtKV code 102. */
    public static final int SEQ_TOO_OLD = DongtingException.KV_CODE_BASE + 102;

    /** DtKV code 103. */
    public static final int INDEX_NOT_INCREASING = DongtingException.KV_CODE_BASE + 103;

    /** DtKV code 104. */
    public static final int HISTORY_COMPACTED = DongtingException.KV_CODE_BASE + 104;

    /** DtKV code 105. */
    public static final int INVALID_SNAPSHOT = DongtingException.KV_CODE_BASE + 105;

    /** DtKV code 106. */
    public static final int TOO_MANY_WAITERS = DongtingException.KV_CODE_BASE + 106;
}
