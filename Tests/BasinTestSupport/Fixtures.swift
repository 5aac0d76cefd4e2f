import Foundation

/// Paths to the reference data copied from ../shared into Tests/Fixtures, found from this source file
/// so that tests run from a fresh clone with nothing beside it.
public enum Fixtures {
    public static let root: URL = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent("Fixtures")

    public static func url(_ relative: String) -> URL { root.appendingPathComponent(relative) }

    public static var digitsTrain: URL { url("data/digits-train.safetensors") }
    public static var digitsTest: URL { url("data/digits-test.safetensors") }
    public static var mlpSeed0: URL { url("mlp-pair/mlp-seed0.safetensors") }
    public static var mlpSeed1: URL { url("mlp-pair/mlp-seed1.safetensors") }

    /// The parsed contents of a JSON fixture.
    public static func json(_ relative: String) throws -> Any {
        try JSONSerialization.jsonObject(with: Data(contentsOf: url(relative)))
    }

    /// The repository root (for tests that run the built binary or read SampleModels).
    public static var repositoryRoot: URL { root.deletingLastPathComponent().deletingLastPathComponent() }

    /// A fresh temporary directory, removed by the caller when done.
    public static func temporaryDirectory() throws -> URL {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("basin-test-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        return dir
    }
}

/// Runs the built `basin` executable (tests of the CLI as a user sees it).
public enum BasinBinary {
    /// The `basin` built beside the test bundle (`swift test` builds it: the test target depends on it).
    public static var url: URL? {
        var candidates: [URL] = []
        let argv0 = URL(fileURLWithPath: CommandLine.arguments[0])
        candidates.append(argv0.deletingLastPathComponent().appendingPathComponent("basin"))
        candidates.append(Bundle.main.bundleURL.deletingLastPathComponent().appendingPathComponent("basin"))
        for config in ["debug", "release"] {
            candidates.append(Fixtures.repositoryRoot.appendingPathComponent(".build/\(config)/basin"))
        }
        return candidates.first { FileManager.default.isExecutableFile(atPath: $0.path) }
    }

    public struct Result {
        public var status: Int32
        public var stdout: String
        public var stderr: String
    }

    /// Runs basin with `arguments`, waiting for it to exit.
    public static func run(_ arguments: [String], environment: [String: String] = [:], currentDirectory: URL? = nil) throws -> Result {
        guard let url else { throw NSError(domain: "basin", code: 1, userInfo: [NSLocalizedDescriptionKey: "basin executable not found"]) }
        return try runProcess(url, arguments, environment: environment, currentDirectory: currentDirectory)
    }

    public static func runProcess(_ executable: URL, _ arguments: [String], environment: [String: String] = [:],
                                  currentDirectory: URL? = nil) throws -> Result {
        let p = Process()
        p.executableURL = executable
        p.arguments = arguments
        var env = ProcessInfo.processInfo.environment
        for (k, v) in environment { env[k] = v }
        p.environment = env
        if let currentDirectory { p.currentDirectoryURL = currentDirectory }
        let out = Pipe(), err = Pipe()
        p.standardOutput = out
        p.standardError = err
        try p.run()
        // Read both pipes to the end before waiting, so a chatty process cannot block on a full pipe.
        let group = DispatchGroup()
        nonisolated(unsafe) var errData = Data()
        group.enter()
        DispatchQueue.global().async {
            errData = err.fileHandleForReading.readDataToEndOfFile()
            group.leave()
        }
        let outData = out.fileHandleForReading.readDataToEndOfFile()
        group.wait()
        p.waitUntilExit()
        return Result(status: p.terminationStatus, stdout: String(decoding: outData, as: UTF8.self),
                      stderr: String(decoding: errData, as: UTF8.self))
    }
}
