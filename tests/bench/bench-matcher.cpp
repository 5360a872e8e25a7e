// Matches names against 10,000 FQDN selectors (names, single-level and
// multi-level patterns) and prints ns per name, with a loop of one std::regex
// per selector -- the naive way -- as the baseline in the same process.
#include "fqdn/matcher.hpp"
#include "fqdn/name.hpp"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <random>
#include <regex>
#include <string>
#include <vector>

using fqdnd::FqdnMatcher;
using fqdnd::FqdnSelector;
using Clock = std::chrono::steady_clock;

namespace {

std::string n(const char* prefix, unsigned i)
{
    return prefix + std::to_string(i);
}

std::regex naive_regex(const FqdnSelector& s)
{
    const std::string chars = "[-a-z0-9_]";
    if (s.is_match_all())
        return std::regex("(" + chars + "+[.])+|[.]", std::regex::optimize);
    std::string re;
    std::string_view text = s.text;
    if (s.is_subdomain_wildcard()) {
        re = "(" + chars + "+[.])+";
        text.remove_prefix(3);
    }
    for (char c : text)
        re += c == '.' ? std::string("[.]") : c == '*' ? chars + "*" : std::string(1, c);
    return std::regex(re, std::regex::optimize);
}

} // namespace

int main(int argc, char** argv)
{
    const unsigned count = argc > 1 ? static_cast<unsigned>(std::stoul(argv[1])) : 10000;
    std::vector<FqdnSelector> selectors;
    std::mt19937 rng(7);
    for (unsigned i = 0; selectors.size() < count; ++i) {
        switch (i % 5) {
        case 0: // match-name
        case 1:
            selectors.push_back(*FqdnSelector::parse_name(n("svc", i) + "." + n("team", i % 97) + ".example.com", nullptr));
            break;
        case 2: // single-level pattern
            selectors.push_back(*FqdnSelector::parse_pattern("*." + n("app", i) + ".example.org", nullptr));
            break;
        case 3: // a '*' inside a label
            selectors.push_back(*FqdnSelector::parse_pattern("api-*." + n("corp", i) + ".net", nullptr));
            break;
        case 4: // multi-level
            selectors.push_back(*FqdnSelector::parse_pattern("**." + n("zone", i) + ".internal", nullptr));
            break;
        }
    }

    // Names: a quarter of each kind that match, and misses of every shape.
    std::vector<std::string> names;
    for (unsigned k = 0; k < 4000; ++k) {
        // Index i of the kind the name is for; one in five beyond the
        // selectors, so some miss.
        const unsigned r = static_cast<unsigned>(rng() % (count / 4));
        auto i = [&](unsigned kind) { return r * 5 + kind; };
        std::string raw;
        switch (k % 8) {
        case 0: raw = n("svc", i(0)) + "." + n("team", i(0) % 97) + ".example.com"; break;
        case 1: raw = n("www", k) + "." + n("app", i(2)) + ".example.org"; break;
        case 2: raw = n("api-v", k) + "." + n("corp", i(3)) + ".net"; break;
        case 3: raw = "a.b.c." + n("zone", i(4)) + ".internal"; break;
        case 4: raw = n("host", k) + ".example.com"; break;
        case 5: raw = "cdn." + n("edge", k) + ".akamai.net"; break;
        case 6: raw = n("x", k) + ".y.z." + n("app", i(2)) + ".example.org"; break;
        case 7: raw = "echo.k8s.intra"; break;
        }
        names.push_back(*fqdnd::normalize_name(raw));
    }

    auto t0 = Clock::now();
    const FqdnMatcher matcher(selectors);
    const double build_ms = std::chrono::duration<double, std::milli>(Clock::now() - t0).count();

    std::vector<FqdnMatcher::SelectorId> out;
    size_t hits = 0;
    const int rounds = 50;
    t0 = Clock::now();
    for (int r = 0; r < rounds; ++r)
        for (const std::string& name : names) {
            out.clear();
            matcher.match(name, out);
            hits += out.size();
        }
    const double trie_ns = std::chrono::duration<double, std::nano>(Clock::now() - t0).count()
        / (static_cast<double>(rounds) * static_cast<double>(names.size()));

    // Baseline: one regex per selector, tried in a loop, on a few names.
    std::vector<std::regex> regexes;
    for (const auto& s : selectors)
        regexes.push_back(naive_regex(s));
    const size_t sample = 40;
    size_t naive_hits = 0, trie_sample_hits = 0;
    t0 = Clock::now();
    for (size_t k = 0; k < sample; ++k)
        for (const auto& re : regexes)
            naive_hits += std::regex_match(names[k], re);
    const double naive_ns = std::chrono::duration<double, std::nano>(Clock::now() - t0).count() / sample;
    for (size_t k = 0; k < sample; ++k)
        trie_sample_hits += matcher.match(names[k]).size();

    std::printf("selectors: %u (2/5 match-name, 1/5 '*.x', 1/5 'api-*.x', 1/5 '**.x')\n", count);
    std::printf("matcher build: %.1f ms\n", build_ms);
    std::printf("matcher: %.0f ns per name (%zu names x %d rounds, %.2f matches per name)\n", trie_ns, names.size(),
                rounds, static_cast<double>(hits) / (rounds * static_cast<double>(names.size())));
    std::printf("baseline, one std::regex per selector: %.0f ns per name (%zu names)\n", naive_ns, sample);
    std::printf("ratio baseline/matcher: %.0fx\n", naive_ns / trie_ns);
    if (naive_hits != trie_sample_hits) {
        std::printf("MISMATCH: regex loop found %zu matches, matcher %zu\n", naive_hits, trie_sample_hits);
        return 1;
    }
    return 0;
}
