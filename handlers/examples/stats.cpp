/*
 * stats.cpp - example C++ handler: statistics of payload.numbers.
 *
 *   {"numbers": [3, 1, 2]}  ->  {"count": 3, "mean": 2.0, "min": 1.0, "max": 3.0, "median": 2.0}
 *
 * The C++ rules at the ABI boundary:
 *   1. The handler (and asya_init/asya_fini) are `extern "C"`: the runtime
 *      finds them by their plain C names.
 *   2. No exception may cross the boundary into the runtime (C code cannot
 *      unwind it; the worker would die by std::terminate -> SIGABRT).  So
 *      every entry point runs its body inside guarded(), which turns
 *        std::bad_alloc        -> asya_oom()          (oom_error)
 *        any std::exception    -> asya_fail(<type>)   (processing_error)
 *        anything else         -> asya_fail("UnknownException")
 *   3. Build with -std=c++17 -fPIC -fvisibility=hidden (and
 *      -fvisibility-inlines-hidden) so only the stamp and handlers are exported:
 *        g++ -std=c++17 -shared -fPIC -fvisibility=hidden \
 *            $(pkg-config --cflags --libs asya-handler) -o stats.so stats.cpp
 *
 * Errors it reports on purpose: "numbers" missing or not a list of numbers
 * (std::invalid_argument), an empty list (std::domain_error), and
 * {"numbers": [...], "reserve": N} reserves N doubles first, so a huge N
 * shows std::bad_alloc becoming oom_error.
 *
 * Try it:
 *   echo '{"numbers": [1, 2, 3, 4]}' | build/bin/asya-invoke --payload \
 *       --handler build/lib/asya/examples/stats.so:stats
 */
#include <asya/asya.h>
#include <asya/asya_json.h>

#include <algorithm>
#include <memory>
#include <new>
#include <stdexcept>
#include <string>
#include <typeinfo>
#include <vector>

ASYA_MODULE_MAGIC(.name = "stats", .version = "1.0");

namespace
{

/* jansson values owned by a unique_ptr: json_decref runs on every path,
 * including when an exception unwinds the stack. */
struct json_deleter {
    void operator()(json_t *j) const
    {
        json_decref(j);
    }
};
using json_ptr = std::unique_ptr<json_t, json_deleter>;

/* A short type name for the error answer, e.g. "std::invalid_argument". */
const char *type_name(const std::exception &e)
{
    if (dynamic_cast<const std::invalid_argument *>(&e))
        return "std::invalid_argument";
    if (dynamic_cast<const std::domain_error *>(&e))
        return "std::domain_error";
    if (dynamic_cast<const std::out_of_range *>(&e))
        return "std::out_of_range";
    if (dynamic_cast<const std::runtime_error *>(&e))
        return "std::runtime_error";
    if (dynamic_cast<const std::logic_error *>(&e))
        return "std::logic_error";
    return "std::exception";
}

/* Run body(); turn every exception into an Asya status.  noexcept: nothing
 * escapes (if it did, std::terminate would end only the worker). */
template <typename F> int guarded(asya_call *call, F body) noexcept
{
    try {
        return body();
    } catch (const std::bad_alloc &) {
        return asya_oom(call, "std::bad_alloc: out of memory");
    } catch (const std::exception &e) {
        return asya_fail(call, type_name(e), "%s", e.what());
    } catch (...) {
        return asya_fail(call, "UnknownException", "a non-standard exception was thrown");
    }
}

/* Emit value (borrowed); throws std::bad_alloc when serialising fails. */
int emit(asya_call *call, const json_t *value)
{
    int rc = asya_emit_json(call, value);
    if (rc == -2)
        throw std::bad_alloc();
    if (rc != 0)
        throw std::runtime_error("the runtime rejected the result");
    return ASYA_OK;
}

int stats_impl(asya_call *call)
{
    json_ptr payload(asya_input_json(call));
    if (!payload)
        throw std::bad_alloc();
    json_t *numbers = json_object_get(payload.get(), "numbers"); // borrowed
    if (!json_is_array(numbers))
        throw std::invalid_argument("payload.numbers must be a list of numbers");

    std::vector<double> v;
    // A deliberately huge reservation demonstrates std::bad_alloc -> oom_error.
    json_int_t reserve = json_integer_value(json_object_get(payload.get(), "reserve"));
    if (reserve > 0)
        v.reserve(static_cast<size_t>(reserve));
    size_t i;
    json_t *item;
    json_array_foreach(numbers, i, item)
    {
        if (!json_is_number(item))
            throw std::invalid_argument("payload.numbers[" + std::to_string(i) +
                                        "] is not a number");
        v.push_back(json_number_value(item));
    }
    if (v.empty())
        throw std::domain_error("the statistics of an empty list are undefined");

    std::sort(v.begin(), v.end());
    double sum = 0;
    for (double x : v)
        sum += x;
    size_t n = v.size();
    double median = n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;

    json_ptr out(json_pack("{s:I, s:f, s:f, s:f, s:f}", "count", (json_int_t)n, "mean",
                           sum / static_cast<double>(n), "min", v.front(), "max", v.back(),
                           "median", median));
    if (!out)
        throw std::bad_alloc();
    return emit(call, out.get());
}

} // namespace

extern "C" {

ASYA_EXPORT int stats(struct asya_call *call);

ASYA_EXPORT int stats(struct asya_call *call)
{
    return guarded(call, [&] { return stats_impl(call); });
}

/* Throws std::runtime_error: shows the guard turning it into processing_error. */
ASYA_EXPORT int always_throws(struct asya_call *call);

ASYA_EXPORT int always_throws(struct asya_call *call)
{
    return guarded(call, [&]() -> int { throw std::runtime_error("thrown on purpose"); });
}

/* What NOT to do: an exception escaping into the runtime's C code cannot be
 * caught there, so std::terminate aborts the worker.  The runtime answers
 * processing_error (type SIGABRT) and starts a new worker; nothing else is
 * harmed, but the message is only "killed by SIGABRT".  Use guarded(). */
ASYA_EXPORT int unguarded_throw(struct asya_call *call);

ASYA_EXPORT int unguarded_throw(struct asya_call *call)
{
    (void)call;
    throw std::runtime_error("escaped the handler");
}

} // extern "C"
