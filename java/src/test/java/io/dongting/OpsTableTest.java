package io.dongting;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.lang.reflect.Method;
import java.lang.reflect.Modifier;
import java.util.Arrays;
import java.util.HashSet;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import org.junit.jupiter.api.Test;

/** Every KV operation of the SDK's table has its blocking and asynchronous KvClient methods. */
class OpsTableTest {
    static String camel(String snake) {
        StringBuilder b = new StringBuilder();
        boolean up = false;
        for (char ch : snake.toCharArray()) {
            if (ch == '_') {
                up = true;
            } else {
                b.append(up ? Character.toUpperCase(ch) : ch);
                up = false;
            }
        }
        return b.toString();
    }

    static boolean hasPublic(String name, boolean async) {
        for (Method m : KvClient.class.getMethods()) {
            if (m.getName().equals(name)
                    && Modifier.isPublic(m.getModifiers())
                    && async == CompletableFuture.class.isAssignableFrom(m.getReturnType())) {
                return true;
            }
        }
        return false;
    }

    @Test
    void tableListsEachOperationOnce() {
        List<String> names = Arrays.asList(Native.kvOpNames());
        assertTrue(names.contains("put") && names.contains("list_page"), names.toString());
        assertEquals(names.size(), new HashSet<>(names).size(), names.toString());
    }

    @Test
    void everyOperationHasItsKvClientMethods() {
        for (String op : Native.kvOpNames()) {
            String name = camel(op);
            assertTrue(hasPublic(name, false), "KvClient has no method " + name);
            assertTrue(hasPublic(name + "Async", true), "KvClient has no method " + name + "Async");
        }
    }
}
