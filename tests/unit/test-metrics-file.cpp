// The metrics file on a private sd-event loop: written at once to the file
// the settings name, atomically; nothing while none is named.
#include "metrics-file.hpp"

#include <doctest/doctest.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <systemd/sd-event.h>

using namespace fqdnd;

namespace {

std::string read(const std::filesystem::path& p)
{
    std::ifstream in(p);
    std::stringstream s;
    s << in.rdbuf();
    return s.str();
}

} // namespace

TEST_CASE("the metrics file is written at start, in the Prometheus text format, and left alone without a name")
{
    char tmpl[] = "/tmp/fqdnd-metrics.XXXXXX";
    REQUIRE(mkdtemp(tmpl));
    const std::filesystem::path dir = tmpl, file = dir / "fqdnd.prom";
    sd_event* e = nullptr;
    REQUIRE(sd_event_new(&e) >= 0);
    SdEventPtr event(e);

    std::string path; // none yet
    int asked = 0;
    metrics::TextFile text([&] { return path; }, [&] {
        ++asked;
        return std::vector<metrics::Sample>{metrics::sample(metrics::ruleset_reloads_total, "", 3)};
    });
    text.start(event.get());
    REQUIRE(sd_event_run(event.get(), 100'000) >= 0);
    CHECK(asked == 0);
    CHECK_FALSE(std::filesystem::exists(file));

    path = file.string();
    text.start(event.get()); // as at a start with a file named
    REQUIRE(sd_event_run(event.get(), 100'000) >= 0);
    CHECK(asked == 1);
    const std::string written = read(file);
    CHECK(written.find("# TYPE fqdnd_ruleset_reloads_total counter\nfqdnd_ruleset_reloads_total 3\n") != std::string::npos);
    // Atomically: no temporary file left beside it.
    size_t files = 0;
    for ([[maybe_unused]] const auto& f : std::filesystem::directory_iterator(dir))
        ++files;
    CHECK(files == 1);
    std::filesystem::remove_all(dir);
}
