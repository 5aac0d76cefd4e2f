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
