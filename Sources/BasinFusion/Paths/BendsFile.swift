import BasinIO
import BasinNet
import BasinTensor
import Foundation

/// Bends of a fitted path saved as safetensors: tensor `bend.<j>.<name>` for bend j (from 1) and every
/// endpoint tensor, and in `__metadata__`:
///
///     basin.path.type          polychain | bezier
///     basin.path.bends         k
///     basin.path.start.sha256  SHA-256 of the start model's file(s) (FileDigest.sha256(of:))
///     basin.path.end.sha256    SHA-256 of the end model's file(s)
///     basin.path.fit           a line of the fit settings (informative)
public enum BendsFile {
    public static let typeKey = "basin.path.type"
    public static let countKey = "basin.path.bends"
    public static let startKey = "basin.path.start.sha256"
    public static let endKey = "basin.path.end.sha256"
    public static let fitKey = "basin.path.fit"

    public static func tensorName(bend j: Int, _ name: String) -> String { "bend.\(j).\(name)" }

    /// Writes `path`'s bends (atomically), refusing to overwrite the endpoints' files.
    /// `modelDTypes` are the end models' stored dtypes: integer tensors (BatchNorm's `num_batches_tracked`) keep
    /// theirs, so a bend reads back with the models' kinds (and `basin merge` of a `basin_path` recipe accepts it);
    /// every other tensor is written in F32, as fitted.
    public static func write(_ path: ModelPath, to url: URL, startSHA256: String, endSHA256: String,
                             extraMetadata: [String: String] = [:], modelDTypes: [String: DType] = [:], protecting inputs: [URL] = []) throws {
        guard path.type != .linear else { throw NetworkError("a linear path has no bends to save") }
        var pairs: [(String, Tensor)] = []
        var dtypes: [String: DType] = [:]
        for (j, bend) in path.bends.enumerated() {
            for (name, tensor) in bend.pairs {
                pairs.append((tensorName(bend: j + 1, name), tensor))
                if let d = modelDTypes[name], !d.isFloatingPoint { dtypes[tensorName(bend: j + 1, name)] = d }
            }
        }
        var metadata = extraMetadata
        metadata[typeKey] = path.type.rawValue
        metadata[countKey] = String(path.bends.count)
        metadata[startKey] = startSHA256
        metadata[endKey] = endSHA256
        try SafeTensorsWriter.write(pairs, to: url, dtype: { dtypes[$0] ?? .f32 }, metadata: metadata, protecting: inputs)
    }

    public struct Loaded: Sendable {
        public var type: PathType
        public var bends: [ParameterSet]
        public var startSHA256: String?
        public var endSHA256: String?
        public var metadata: [String: String]
    }

    /// Reads bends; every bend must hold exactly the tensors (names and shapes) of `like` when given.
    public static func read(_ url: URL, like template: ParameterSet? = nil) throws -> Loaded {
        let file = try SafeTensorsFile(url: url)
        let path = url.path
        guard let typeName = file.metadata[typeKey], let type = PathType(rawValue: typeName), type != .linear else {
            throw BasinIOError(.badMetadata, file: path, "is not a bends file: __metadata__ needs '\(typeKey)' = polychain or bezier (found \(file.metadata[typeKey].map { "'\($0)'" } ?? "none"))")
        }
        guard let countText = file.metadata[countKey], let count = Int(countText), count >= 1 else {
            throw BasinIOError(.badMetadata, file: path, "__metadata__ needs '\(countKey)' = the number of bends (>= 1)")
        }
        var bends = [ParameterSet](repeating: ParameterSet(), count: count)
        for name in file.names {
            let parts = name.split(separator: ".", maxSplits: 2)
            guard parts.count == 3, parts[0] == "bend", let j = Int(parts[1]), j >= 1, j <= count else {
                throw BasinIOError(.malformedEntry, file: path, tensor: name, "is not named bend.<1...\(count)>.<tensor>")
            }
            bends[j - 1][String(parts[2])] = try file.tensor(name)
        }
        let loaded = Loaded(type: type, bends: bends, startSHA256: file.metadata[startKey], endSHA256: file.metadata[endKey], metadata: file.metadata)
        return try template.map { try loaded.conforming(to: $0, file: url) } ?? loaded
    }
}

extension BendsFile.Loaded {
    /// The bends checked against the models' tensors (every bend holds exactly `template`'s names and shapes), in
    /// the template's order; errors name `file` and the bend's tensor.
    public func conforming(to template: ParameterSet, file url: URL) throws -> BendsFile.Loaded {
        var out = self
        for (j, bend) in bends.enumerated() {
            for name in template.names {
                guard let t = bend[name] else {
                    throw BasinIOError(.missingTensor, file: url.path, tensor: BendsFile.tensorName(bend: j + 1, name), "is missing (the models have '\(name)')")
                }
                guard t.shape == template[name]!.shape else {
                    throw BasinIOError(.badShape, file: url.path, tensor: BendsFile.tensorName(bend: j + 1, name), "has shape \(t.shape) but the models' '\(name)' is \(template[name]!.shape)")
                }
            }
            if let extra = bend.names.first(where: { template[$0] == nil }) {
                throw BasinIOError(.malformedEntry, file: url.path, tensor: BendsFile.tensorName(bend: j + 1, extra), "has no counterpart in the models")
            }
            out.bends[j] = ParameterSet(template.names.map { ($0, bend[$0]!) })
        }
        return out
    }
}

extension BendsFile {
    /// Checks that the file's bends were fitted between these endpoints (by SHA-256), in this order.
    public static func checkEndpoints(_ loaded: Loaded, file: URL, startSHA256: String, endSHA256: String) throws {
        if loaded.startSHA256 == endSHA256 && loaded.endSHA256 == startSHA256 && startSHA256 != endSHA256 {
            throw BasinIOError(.invalidArgument, file: file.path, "these bends were fitted from the second model to the first; give the models in the other order")
        }
        if let s = loaded.startSHA256, s != startSHA256 {
            throw BasinIOError(.invalidArgument, file: file.path, "these bends were fitted from a start model with SHA-256 \(s), not this one (\(startSHA256))")
        }
        if let e = loaded.endSHA256, e != endSHA256 {
            throw BasinIOError(.invalidArgument, file: file.path, "these bends were fitted to an end model with SHA-256 \(e), not this one (\(endSHA256))")
        }
    }
}
