package io.dongting;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.dongting.conformance.ConformanceRunner;
import java.io.ByteArrayOutputStream;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import org.junit.jupiter.api.Test;

/** The shared conformance scenarios, run in-process against an embedded 3-node cluster. */
class ConformanceTest {
    @Test
    void everyScenarioPasses() throws Exception {
        Path file = Path.of(System.getProperty("dongting.workspace", ".."), "tests", "conformance", "scenarios.txt");
        List<ConformanceRunner.Scenario> scenarios = ConformanceRunner.parse(Files.readString(file));
        assertFalse(scenarios.isEmpty());
        ByteArrayOutputStream buf = new ByteArrayOutputStream();
        int failed;
        try (LocalCluster cluster = LocalCluster.start(3);
                ConformanceRunner r = new ConformanceRunner(cluster.addresses(), 0, "javatest");
                PrintStream out = new PrintStream(buf, true, StandardCharsets.UTF_8)) {
            failed = r.runAll(scenarios, out);
        }
        String text = buf.toString(StandardCharsets.UTF_8);
        assertEquals(0, failed, text);
        assertTrue(text.contains("javatest: " + scenarios.size() + " passed, 0 failed"), text);
    }

    @Test
    void malformedFilesAreRefusedNamingTheLine() {
        IllegalArgumentException e = org.junit.jupiter.api.Assertions.assertThrows(
                IllegalArgumentException.class, () -> ConformanceRunner.parse("# c\nput a k v => ok\n"));
        assertTrue(e.getMessage().startsWith("line 2:"), e.getMessage());
    }
}
