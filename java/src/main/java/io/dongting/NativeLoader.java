package io.dongting;

import java.io.IOException;
import java.io.InputStream;
import java.io.UncheckedIOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.util.Locale;

/**
 * Loads the native library once per class loader.
 *
 * <p>By default the library packaged in the jar (resource
 * {@code io/dongting/native/<os>-<arch>/<file>}, e.g. {@code linux-x86_64/libdongting_jvm.so})
 * is copied to a temporary file and loaded from there. To load another build instead, set the
 * system property {@value #PATH_PROPERTY} or the environment variable {@value #PATH_ENV} to the
 * library file's path (the property wins).
 */
public final class NativeLoader {
    /** System property naming the native library file to load instead of the packaged one. */
    public static final String PATH_PROPERTY = "dongting.library.path";
    /** Environment variable naming the native library file (used when the property is unset). */
    public static final String PATH_ENV = "DONGTING_LIBRARY_PATH";

    private static boolean loaded;

    private NativeLoader() {}

    /**
     * Loads the library if it is not loaded yet.
     *
     * @throws UnsatisfiedLinkError when it cannot be found or loaded; the message says where it
     *     looked
     */
    public static synchronized void load() {
        if (loaded) {
            return;
        }
        String path = System.getProperty(PATH_PROPERTY);
        if (path == null || path.isEmpty()) {
            path = System.getenv(PATH_ENV);
        }
        if (path != null && !path.isEmpty()) {
            System.load(Path.of(path).toAbsolutePath().toString());
        } else {
            loadPackaged();
        }
        loaded = true;
    }

    /** @return the platform directory name of this JVM, e.g. {@code linux-x86_64} */
    public static String platform() {
        String os = System.getProperty("os.name", "").toLowerCase(Locale.ROOT);
        String arch = System.getProperty("os.arch", "").toLowerCase(Locale.ROOT);
        String o;
        if (os.startsWith("linux")) {
            o = "linux";
        } else if (os.startsWith("mac") || os.startsWith("darwin")) {
            o = "macos";
        } else if (os.startsWith("windows")) {
            o = "windows";
        } else {
            o = os.replace(' ', '_');
        }
        String a;
        switch (arch) {
            case "amd64":
            case "x86_64":
                a = "x86_64";
                break;
            case "aarch64":
            case "arm64":
                a = "aarch64";
                break;
            default:
                a = arch;
        }
        return o + "-" + a;
    }

    private static String fileName() {
        String p = platform();
        if (p.startsWith("windows")) {
            return "dongting_jvm.dll";
        }
        if (p.startsWith("macos")) {
            return "libdongting_jvm.dylib";
        }
        return "libdongting_jvm.so";
    }

    private static void loadPackaged() {
        String resource = "native/" + platform() + "/" + fileName();
        try (InputStream in = NativeLoader.class.getResourceAsStream(resource)) {
            if (in == null) {
                throw new UnsatisfiedLinkError("no native library for " + platform() + " in the jar (resource io/dongting/"
                        + resource + "); set -D" + PATH_PROPERTY + "=/path/to/" + fileName() + " or " + PATH_ENV);
            }
            String name = fileName();
            int dot = name.lastIndexOf('.');
            Path tmp = Files.createTempFile(name.substring(0, dot) + "-", name.substring(dot));
            try {
                Files.copy(in, tmp, StandardCopyOption.REPLACE_EXISTING);
                System.load(tmp.toAbsolutePath().toString());
            } finally {
                // The loaded library stays mapped; on Windows the file is in use, so delete at exit.
                try {
                    Files.deleteIfExists(tmp);
                } catch (IOException e) {
                    tmp.toFile().deleteOnExit();
                }
            }
        } catch (IOException e) {
            throw new UncheckedIOException("cannot extract the native library", e);
        }
    }
}
