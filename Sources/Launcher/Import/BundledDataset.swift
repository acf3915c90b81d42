import Foundation

/// Where the bundled data set lives inside the repository.
let bundledDatasetPath = "data/fb-news-posts-2017/fb_news_posts_20K.csv"

/// The path of the bundled CSV of Facebook news posts.
///
/// With `HEADLINE_DATA_DIR` set, it must be there: either that folder holds
/// fb_news_posts_20K.csv itself, or its subfolder fb-news-posts-2017 does.
/// Otherwise the folders above the executable (from /proc/self/exe and
/// from `CommandLine.arguments[0]`) and above the current directory are
/// searched for `data/fb-news-posts-2017/fb_news_posts_20K.csv`.
func bundledDatasetCSV() throws -> String {
    let manager = FileManager.default
    let fileName = (bundledDatasetPath as NSString).lastPathComponent
    if let dir = ProcessInfo.processInfo.environment["HEADLINE_DATA_DIR"],
        !dir.isEmpty
    {
        let candidates = [
            dir + "/" + fileName, dir + "/fb-news-posts-2017/" + fileName,
        ]
        if let found = candidates.first(where: {
            manager.isReadableFile(atPath: $0)
        }) {
            return found
        }
        throw ImportError(
            file: dir,
            "HEADLINE_DATA_DIR is set, but neither "
                + candidates.joined(separator: " nor ") + " is a readable file")
    }
    var starts: [String] = []
    func addStart(_ directory: String) {
        let clean = (directory as NSString).standardizingPath
        if !clean.isEmpty, !starts.contains(clean) { starts.append(clean) }
    }
    let cwd = manager.currentDirectoryPath
    if let exe = try? manager.destinationOfSymbolicLink(
        atPath: "/proc/self/exe")
    {
        addStart((exe as NSString).deletingLastPathComponent)
    }
    if let first = CommandLine.arguments.first, first.contains("/") {
        let absolute = first.hasPrefix("/") ? first : cwd + "/" + first
        let resolved = (absolute as NSString).resolvingSymlinksInPath
        addStart((resolved as NSString).deletingLastPathComponent)
    }
    addStart(cwd)
    for start in starts {
        var directory = start
        while true {
            let candidate =
                (directory == "/" ? "" : directory) + "/" + bundledDatasetPath
            if manager.isReadableFile(atPath: candidate) { return candidate }
            let parent = (directory as NSString).deletingLastPathComponent
            if parent == directory || parent.isEmpty { break }
            directory = parent
        }
    }
    throw ImportError(
        file: bundledDatasetPath,
        "the bundled data set was not found; looked in every folder above "
            + starts.joined(separator: ", ")
            + "; set HEADLINE_DATA_DIR to the folder that holds it")
}

/// The `prepare` arguments of the default run on the bundled data set:
/// the post text, shares above the training median as the label, the
/// posting hour and weekday (UTC) and whether the link is a Facebook
/// video as features (A = 5), one row per post (the latest scrape),
/// posts without words dropped, a seeded shuffle and a 20% validation part.
func defaultPrepareArguments(csv: String, out: String) -> [String] {
    [
        "--csv", csv, "--out", out,
        "--text-column", "message",
        "--label-column", "shares", "--label-threshold", "median",
        "--time-column", "created_time",
        "--link-video-column", "link",
        "--dedupe-column", "post_id", "--dedupe-latest-column", "scrape_time",
        "--skip-empty-text",
        "--validation-split", "0.2",
        "--shuffle-seed", "1337",
        "--vocab-size", "10000",
        "--sequence-length", "100",
    ]
}
