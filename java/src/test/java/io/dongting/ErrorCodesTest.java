package io.dongting;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.lang.reflect.Field;
import java.lang.reflect.Modifier;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.Set;
import org.junit.jupiter.api.Test;

/**
 * The error-code table: every code of the native library has a constant in {@link ErrorCode}
 * and an exception class of its own (or is one of the few codes left to the base classes).
 */
class ErrorCodesTest {
    /** Codes that deliberately raise a base class: conditions a caller does not handle one by one. */
    static final Set<String> BASE_CLASS_CODES =
            Set.of(
                    "SYS_ERROR",
                    "COMMAND_NOT_SUPPORTED",
                    "PROTOCOL_ERROR",
                    "UNSUPPORTED_API_VERSION",
                    "RESOURCE",
                    "WRONG_RESULT_KIND",
                    "PENDING",
                    "SERVER_STOPPED",
                    "INTERNAL",
                    "INVALID_COMMAND",
                    "SEQ_TOO_OLD",
                    "INDEX_NOT_INCREASING",
                    "INVALID_SNAPSHOT");

    static Map<String, Integer> constants() throws IllegalAccessException {
        Map<String, Integer> constants = new LinkedHashMap<>();
        for (Field f : ErrorCode.class.getDeclaredFields()) {
            int m = f.getModifiers();
            if (Modifier.isPublic(m) && Modifier.isStatic(m) && f.getType() == int.class) {
                constants.put(f.getName(), f.getInt(null));
            }
        }
        return constants;
    }

    @Test
    void everyCodeHasAConstantAndNoConstantLacksACode() throws IllegalAccessException {
        Map<String, Integer> table = DongtingException.errorCodes();
        assertFalse(table.isEmpty());
        assertEquals(table.size(), Set.copyOf(table.values()).size(), "duplicate code");
        for (Map.Entry<String, Integer> e : table.entrySet()) {
            assertEquals(e.getKey(), DongtingException.codeName(e.getValue()));
        }
        assertEquals(table, constants());
    }

    @Test
    void everyCodeHasItsOwnExceptionClassUnlessListed() {
        Map<String, Integer> table = DongtingException.errorCodes();
        assertTrue(table.keySet().containsAll(BASE_CLASS_CODES), "a listed code is not a code");
        for (Map.Entry<String, Integer> e : table.entrySet()) {
            int code = e.getValue();
            DongtingException x = DongtingException.fromCode(code, "m", false, null);
            Class<?> base =
                    code > DongtingException.KV_CODE_BASE
                            ? KvException.class
                            : DongtingException.class;
            assertEquals(code, x.code());
            assertEquals(e.getKey(), x.codeName());
            assertTrue(base.isInstance(x));
            if (BASE_CLASS_CODES.contains(e.getKey())) {
                assertEquals(base, x.getClass(), e.getKey() + " maps to " + x.getClass());
            } else {
                assertNotEquals(base, x.getClass(), e.getKey() + " has no exception class");
            }
        }
    }
}
