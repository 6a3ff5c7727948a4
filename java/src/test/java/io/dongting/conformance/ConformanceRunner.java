package io.dongting.conformance;

import io.dongting.DistributedLock;
import io.dongting.DongtingException;
import io.dongting.KvClient;
import io.dongting.KvNode;
import io.dongting.KvPage;
import io.dongting.KvWatch;
import io.dongting.NodeKind;
import io.dongting.WatchEvent;
import io.dongting.WriteResult;
import java.io.IOException;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.TimeUnit;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/**
 * Runs tests/conformance/scenarios.txt through the public {@code io.dongting} API (see
 * tests/conformance/README.md for the format and the output). Environment: {@code DT_SERVERS},
 * {@code DT_GROUP}, {@code DT_SCENARIOS}, {@code DT_LANG} (default {@code java}).
 */
public final class ConformanceRunner implements AutoCloseable {
    private static final Pattern REPEAT = Pattern.compile("\\{(.)\\*(\\d+)\\}");

    private final int group;
    private final String lang;
    /** The cluster's addresses ({@code $S} of {@code new_client}). */
    private final String servers;
    private final Map<String, KvClient> clients = new LinkedHashMap<>();
    /** Lock handles by client and key, made on a lock step's first use. */
    private final Map<String, DistributedLock> locks = new LinkedHashMap<>();
    /** Watches by client and key, made by watch steps. */
    private final Map<String, KvWatch> watches = new LinkedHashMap<>();

    /** A step: its line, the operation tokens and the expectation tokens. */
    public record Step(int line, List<String> op, List<String> expect) {}

    /** A named list of steps. */
    public record Scenario(String name, List<Step> steps) {}

    /** A step that did not give what was expected. */
    public static final class Failure extends Exception {
        private static final long serialVersionUID = 1L;

        Failure(String message) {
            super(message);
        }
    }

    /**
     * Creates the clients {@code a}, {@code b} (10 s timeout) and {@code u} (a server where
     * nothing listens, 500 ms timeout).
     *
     * @param servers the cluster's service addresses
     * @param group the raft group
     * @param lang the language name used in the key prefix
     */
    public ConformanceRunner(String servers, int group, String lang) {
        this.group = group;
        this.lang = lang;
        this.servers = servers;
        clients.put("a", KvClient.builder(servers).timeoutMillis(10_000).build());
        clients.put("b", KvClient.builder(servers).timeoutMillis(10_000).build());
        clients.put("u", KvClient.builder("127.0.0.1:1").timeoutMillis(500).build());
    }

    @Override
    public void close() {
        for (KvWatch w : watches.values()) {
            w.close();
        }
        for (DistributedLock l : locks.values()) {
            l.close();
        }
        for (KvClient c : clients.values()) {
            c.close();
        }
    }

    /**
     * Parses scenario text.
     *
     * @param text the file's content
     * @return the scenarios in order
     * @throws IllegalArgumentException naming the line of a malformed one
     */
    public static List<Scenario> parse(String text) {
        List<Scenario> out = new ArrayList<>();
        String[] lines = text.split("\n", -1);
        for (int i = 0; i < lines.length; i++) {
            String line = lines[i].strip();
            if (line.isEmpty() || line.startsWith("#")) {
                continue;
            }
            List<String> tokens = Arrays.asList(line.split("[ \t]+"));
            if (tokens.get(0).equals("scenario")) {
                if (tokens.size() != 2) {
                    throw new IllegalArgumentException("line " + (i + 1) + ": scenario takes one name");
                }
                out.add(new Scenario(tokens.get(1), new ArrayList<>()));
                continue;
            }
            if (out.isEmpty()) {
                throw new IllegalArgumentException("line " + (i + 1) + ": step before the first scenario");
            }
            int arrow = tokens.indexOf("=>");
            List<String> op = arrow < 0 ? tokens : tokens.subList(0, arrow);
            List<String> expect = arrow < 0 ? List.of() : tokens.subList(arrow + 1, tokens.size());
            out.get(out.size() - 1).steps().add(new Step(i + 1, List.copyOf(op), List.copyOf(expect)));
        }
        return out;
    }

    static String expand(String token, String prefix) {
        if (token.equals("-")) {
            return "";
        }
        String t = token.replace("$P", prefix);
        Matcher m = REPEAT.matcher(t);
        StringBuilder sb = new StringBuilder();
        while (m.find()) {
            m.appendReplacement(sb, Matcher.quoteReplacement(m.group(1).repeat(Integer.parseInt(m.group(2)))));
        }
        m.appendTail(sb);
        return sb.toString();
    }

    private static byte[] b(String s) {
        return s.getBytes(StandardCharsets.UTF_8);
    }

    private static String shown(List<String> values) {
        List<String> out = new ArrayList<>();
        for (String v : values) {
            out.add(v.length() <= 40 ? v : v.substring(0, 20) + "...(" + v.length() + " bytes)");
        }
        return String.join(" ", out);
    }

    private static void check(List<String> want, List<String> got) throws Failure {
        if (!want.equals(got)) {
            throw new Failure("expected [" + shown(want) + "], got [" + shown(got) + "]");
        }
    }

    private static String nodeText(KvNode n) {
        if (n == null || n.kind() == NodeKind.ABSENT) {
            return "-";
        }
        if (n.kind() == NodeKind.DIR) {
            return "<dir>";
        }
        if (n.kind() == NodeKind.VALUE) {
            return n.valueString();
        }
        return "<lock>";
    }

    /** {@code new_client ADDRESSES TIMEOUT_MS}: makes a client and closes it. */
    private Object newClient(List<String> op, String prefix) throws Failure {
        if (op.size() != 3) {
            throw new Failure("new_client takes ADDRESSES and TIMEOUT_MS");
        }
        String addrs = expand(op.get(1), prefix).replace("$S", servers);
        KvClient.builder(addrs).timeoutMillis(number(op.get(2))).build().close();
        return null;
    }

    private Object call(List<String> op, String prefix) throws Failure {
        String name = op.get(0);
        if (name.equals("new_client")) {
            return newClient(op, prefix);
        }
        if (op.size() < 2 || !clients.containsKey(op.get(1))) {
            throw new Failure("unknown client in " + String.join(" ", op));
        }
        KvClient c = clients.get(op.get(1));
        List<String> args = new ArrayList<>();
        for (String t : op.subList(2, op.size())) {
            args.add(expand(t, prefix));
        }
        switch (name) {
            case "put":
                want(name, args, 2);
                return c.put(group, args.get(0), b(args.get(1)));
            case "get":
                want(name, args, 1);
                return c.get(group, args.get(0));
            case "remove":
                want(name, args, 1);
                return c.remove(group, args.get(0));
            case "mkdir":
                want(name, args, 1);
                return c.mkdir(group, args.get(0));
            case "list":
                want(name, args, 1);
                return c.list(group, args.get(0));
            case "list_page":
                want(name, args, 3);
                return c.listPage(group, args.get(0), args.get(1), intNumber(args.get(2)));
            case "list_pages":
                want(name, args, 2);
                return listPages(c, args.get(0), intNumber(args.get(1)));
            case "batch_put": {
                if (args.size() % 2 != 0) {
                    throw new Failure("batch_put takes key/value pairs");
                }
                List<byte[]> keys = new ArrayList<>();
                List<byte[]> values = new ArrayList<>();
                for (int i = 0; i < args.size(); i += 2) {
                    keys.add(b(args.get(i)));
                    values.add(b(args.get(i + 1)));
                }
                return c.batchPut(group, keys, values);
            }
            case "batch_get":
                return c.batchGet(group, args.toArray(new String[0]));
            case "batch_remove":
                return c.batchRemove(group, args.toArray(new String[0]));
            case "cas":
                want(name, args, 3);
                return c.compareAndSet(group, args.get(0), b(args.get(1)), b(args.get(2)));
            case "put_temp":
                want(name, args, 3);
                return c.putTemp(group, args.get(0), b(args.get(1)), number(args.get(2)));
            case "make_temp_dir":
                want(name, args, 2);
                return c.makeTempDir(group, args.get(0), number(args.get(1)));
            case "update_ttl":
                want(name, args, 2);
                return c.updateTtl(group, args.get(0), number(args.get(1)));
            case "try_lock":
                want(name, args, 3);
                return lock(op.get(1), c, args.get(0)).tryLock(number(args.get(1)), number(args.get(2)));
            case "unlock":
                want(name, args, 1);
                lock(op.get(1), c, args.get(0)).unlock();
                return null;
            case "update_lease":
                want(name, args, 2);
                lock(op.get(1), c, args.get(0)).updateLease(number(args.get(1)));
                return null;
            case "watch": {
                want(name, args, 1);
                String id = op.get(1) + " " + args.get(0);
                if (watches.containsKey(id)) {
                    throw new Failure("client " + op.get(1) + " already watches " + args.get(0));
                }
                watches.put(id, c.watch(group, args.get(0)));
                return null;
            }
            case "next_event":
            case "unwatch": {
                want(name, args, name.equals("unwatch") ? 1 : 2);
                KvWatch w = watches.get(op.get(1) + " " + args.get(0));
                if (w == null) {
                    throw new Failure("client " + op.get(1) + " does not watch " + args.get(0));
                }
                if (name.equals("unwatch")) {
                    w.close();
                    return null;
                }
                return eventWords(w.poll(number(args.get(1)), TimeUnit.MILLISECONDS));
            }
            default:
                throw new Failure("unknown step '" + name + "'");
        }
    }

    /**
     * {@code list_pages}: every page of {@code limit} children, from the first, each after the
     * previous page's last key while the page says more follow.
     */
    private List<KvNode> listPages(KvClient c, String dir, int limit) throws Failure {
        List<KvNode> all = new ArrayList<>();
        String after = "";
        while (true) {
            KvPage page = c.listPage(group, dir, after, limit);
            all.addAll(page.nodes());
            if (!page.more()) {
                return all;
            }
            if (page.nodes().isEmpty()) {
                throw new Failure("an empty page of " + dir + " after '" + after + "' says more follow");
            }
            after = page.nextAfterString();
        }
    }

    /** The words of next_event's expectations for what it got ({@code none}: nothing in time). */
    private static List<String> eventWords(WatchEvent e) {
        if (e == null) {
            return List.of("none");
        }
        if (e.kind() != WatchEvent.Kind.CHANGED) {
            return List.of("compacted");
        }
        List<String> words = new ArrayList<>(List.of("event", e.keyString()));
        switch (e.state()) {
            case ABSENT -> words.add("absent");
            case DIR -> words.add("dir");
            case LOCK -> words.add("lock");
            default -> {
                words.add("value");
                words.add(e.valueString());
            }
        }
        return words;
    }

    /** The client's handle on the lock at {@code key}, made on first use. */
    private DistributedLock lock(String who, KvClient c, String key) {
        String id = who + " " + key;
        DistributedLock l = locks.get(id);
        if (l == null) {
            l = c.createLock(group, key);
            locks.put(id, l);
        }
        return l;
    }

    private static void want(String name, List<String> args, int n) throws Failure {
        if (args.size() != n) {
            throw new Failure(name + " takes " + n + " arguments, got " + args.size());
        }
    }

    private static long number(String s) throws Failure {
        try {
            return Long.parseLong(s);
        } catch (NumberFormatException e) {
            throw new Failure("not a number: " + s);
        }
    }

    /** A number the step passes as a Java {@code int} (a page limit). */
    private static int intNumber(String s) throws Failure {
        long n = number(s);
        if (n != (int) n) {
            throw new Failure("not an int: " + s);
        }
        return (int) n;
    }

    private static List<String> names(List<KvNode> nodes) {
        List<String> out = new ArrayList<>();
        for (KvNode n : nodes) {
            out.add(n.name());
        }
        return out;
    }

    @SuppressWarnings("unchecked")
    private void step(Step s, String prefix) throws Failure {
        List<String> op = s.op();
        List<String> expect = s.expect();
        if (op.get(0).equals("sleep")) {
            if (op.size() != 2) {
                throw new Failure("sleep takes one argument");
            }
            try {
                Thread.sleep(number(op.get(1)));
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
                throw new Failure("interrupted");
            }
            return;
        }
        if (expect.isEmpty()) {
            throw new Failure("missing expectation");
        }
        String kind = expect.get(0);
        Object reply;
        try {
            reply = call(op, prefix);
        } catch (DongtingException e) {
            if (!kind.equals("error")) {
                throw new Failure("expected " + kind + ", got error " + e.codeName() + " (" + e.getMessage() + ")");
            }
            if (expect.size() != 2) {
                throw new Failure("error takes one code name");
            }
            if (!Arrays.asList(expect.get(1).split("\\|")).contains(e.codeName())) {
                throw new Failure("expected error " + expect.get(1) + ", got " + e.codeName() + " (" + e.getMessage() + ")");
            }
            return;
        }
        switch (kind) {
            case "error":
                throw new Failure("expected error " + (expect.size() > 1 ? expect.get(1) : "") + ", got success");
            case "ok":
                return;
            case "value":
                check(List.of(expand(expect.get(1), prefix)), List.of(nodeText((KvNode) reply)));
                return;
            case "absent":
                check(List.of("-"), List.of(nodeText((KvNode) reply)));
                return;
            case "dir":
                check(List.of("<dir>"), List.of(nodeText((KvNode) reply)));
                return;
            case "lock":
                check(List.of("<lock>"), List.of(nodeText((KvNode) reply)));
                return;
            case "event":
            case "none": {
                List<String> want = new ArrayList<>();
                for (String t : expect) {
                    want.add(expand(t, prefix));
                }
                check(want, (List<String>) reply);
                return;
            }
            case "locked":
            case "not_locked":
                check(List.of(kind), List.of((Long) reply > 0 ? "locked" : "not_locked"));
                return;
            case "children": {
                List<String> want = new ArrayList<>();
                for (String t : expect.subList(1, expect.size())) {
                    want.add(expand(t, prefix));
                }
                check(want, names((List<KvNode>) reply));
                return;
            }
            case "page": {
                if (expect.size() < 2 || !List.of("more", "end").contains(expect.get(1))) {
                    throw new Failure("page takes more or end, then the names");
                }
                List<String> want = new ArrayList<>(List.of(expect.get(1)));
                for (String t : expect.subList(2, expect.size())) {
                    want.add(expand(t, prefix));
                }
                KvPage page = (KvPage) reply;
                List<String> got = new ArrayList<>(List.of(page.more() ? "more" : "end"));
                got.addAll(names(page.nodes()));
                check(want, got);
                return;
            }
            case "values": {
                List<String> want = new ArrayList<>();
                for (String t : expect.subList(1, expect.size())) {
                    want.add(t.equals("-") ? "-" : expand(t, prefix));
                }
                List<String> got = new ArrayList<>();
                for (KvNode n : (List<KvNode>) reply) {
                    got.add(nodeText(n));
                }
                check(want, got);
                return;
            }
            case "codes": {
                List<String> got = new ArrayList<>();
                for (int code : ((WriteResult) reply).codes()) {
                    got.add(DongtingException.codeName(code));
                }
                check(expect.subList(1, expect.size()), got);
                return;
            }
            default:
                throw new Failure("unknown expectation '" + kind + "'");
        }
    }

    /**
     * Runs one scenario: creates {@code conf}, {@code conf.LANG} and its own directory with
     * client {@code a}, then its steps until the first failure.
     *
     * @param sc the scenario
     * @throws Failure naming the line of the failing step
     */
    public void scenario(Scenario sc) throws Failure {
        String prefix = "conf." + lang + "." + sc.name();
        for (String d : List.of("conf", "conf." + lang, prefix)) {
            clients.get("a").mkdir(group, d);
        }
        for (Step s : sc.steps()) {
            try {
                step(s, prefix);
            } catch (Failure e) {
                throw new Failure("line " + s.line() + ": " + e.getMessage());
            } catch (RuntimeException e) {
                throw new Failure("line " + s.line() + ": " + e);
            }
        }
    }

    /**
     * Runs every scenario, printing {@code PASS name} / {@code FAIL name: ...} and the summary.
     *
     * @param scenarios the scenarios
     * @param out where to print
     * @return how many failed
     */
    public int runAll(List<Scenario> scenarios, PrintStream out) {
        int passed = 0;
        int failed = 0;
        for (Scenario sc : scenarios) {
            try {
                scenario(sc);
                passed++;
                out.println("PASS " + sc.name());
            } catch (Failure | DongtingException e) {
                failed++;
                out.println("FAIL " + sc.name() + ": " + e.getMessage());
            }
            out.flush();
        }
        out.println(lang + ": " + passed + " passed, " + failed + " failed");
        return failed;
    }

    /**
     * The entry point of tests/conformance/java/run.sh.
     *
     * @param args unused
     */
    public static void main(String[] args) {
        String servers = System.getenv("DT_SERVERS");
        String groupText = System.getenv("DT_GROUP");
        String path = System.getenv("DT_SCENARIOS");
        String lang = System.getenv().getOrDefault("DT_LANG", "java");
        if (servers == null || groupText == null || path == null) {
            System.err.println("conformance: environment: DT_SERVERS, DT_GROUP and DT_SCENARIOS are required");
            System.exit(2);
        }
        List<Scenario> scenarios;
        int group;
        try {
            group = Integer.parseInt(groupText);
            scenarios = parse(Files.readString(Path.of(path)));
        } catch (IOException | IllegalArgumentException e) {
            System.err.println("conformance: " + e.getMessage());
            System.out.println(lang + ": 0 passed, 1 failed");
            System.exit(1);
            return;
        }
        int failed;
        try (ConformanceRunner r = new ConformanceRunner(servers, group, lang)) {
            failed = r.runAll(scenarios, System.out);
        }
        System.exit(failed == 0 ? 0 : 1);
    }
}
