package io.dongting;

import java.time.Duration;
import java.util.Objects;

/**
 * Range checks of numeric arguments. A value out of range is an {@link InvalidArgumentException}
 * (code 900) whose message names the argument, its range and the value given, thrown before
 * anything is sent; no value is taken as "the default".
 */
final class Args {
    private Args() {}

    /**
     * @return {@code value} when it is {@code min} to {@code max}
     * @throws InvalidArgumentException otherwise
     */
    static long range(String name, long value, long min, long max) {
        if (value < min || value > max) {
            throw new InvalidArgumentException(
                    900, name + " must be between " + min + " and " + max + ", got " + value, false, null);
        }
        return value;
    }

    /**
     * A wait given as a {@link Duration}: 0 to {@code maxMillis}, in milliseconds.
     *
     * @throws InvalidArgumentException when negative or longer
     */
    static long millis(String name, Duration value, long maxMillis) {
        Objects.requireNonNull(value, name);
        long ms;
        try {
            ms = value.toMillis();
        } catch (ArithmeticException e) {
            ms = value.isNegative() ? Long.MIN_VALUE : Long.MAX_VALUE;
        }
        if (value.isNegative() || ms > maxMillis) {
            throw new InvalidArgumentException(
                    900, name + " must be between 0 and " + maxMillis + " ms, got " + value, false, null);
        }
        return ms;
    }
}
