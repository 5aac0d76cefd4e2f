import BasinIO
import BasinTensor
import Foundation
import Yams

/// A merge recipe in mergekit's configuration schema (the subset Basin implements):
///
/// ```yaml
/// merge_method: ties            # linear | task_arithmetic | ties | dare_linear | dare_ties | slerp | fisher | regmean
/// base_model: base.safetensors  # paths are relative to the recipe file
/// models:
///   - model: a.safetensors
///     parameters: {weight: 0.5, density: 0.7}
///   - model: b.safetensors
///     parameters:
///       weight: [{filter: "layers.0", value: 0.3}, {value: 0.5}]
/// parameters: {normalize: true, lambda: 1.0, t: 0.5}
/// dtype: bfloat16
/// ```
public struct MergeRecipe: Sendable {
    public struct ModelEntry: Sendable {
        public var model: String
        public var parameters: [String: ParameterValue]
        public init(model: String, parameters: [String: ParameterValue] = [:]) {
            self.model = model
            self.parameters = parameters
        }
    }

    public var method: MergeMethod
    public var models: [ModelEntry]
    public var baseModel: String?
    public var parameters: [String: ParameterValue]
    /// mergekit's `dtype` (Basin computes in Float32 and writes this dtype); nil keeps each input's dtype.
    public var dtype: DType?
    /// mergekit's `out_dtype`; wins over `dtype` for the written file.
    public var outDType: DType?
    /// Basin-only: seed for DARE's drop masks (mergekit draws unseeded masks).
    public var seed: UInt64
    /// Folder that relative model paths are resolved against (the recipe file's folder).
    public var directory: URL

    public init(method: MergeMethod, models: [ModelEntry], baseModel: String? = nil, parameters: [String: ParameterValue] = [:],
                dtype: DType? = nil, outDType: DType? = nil, seed: UInt64 = 0,
                directory: URL = URL(fileURLWithPath: FileManager.default.currentDirectoryPath)) {
        self.method = method
        self.models = models
        self.baseModel = baseModel
        self.parameters = parameters
        self.dtype = dtype
        self.outDType = outDType
        self.seed = seed
        self.directory = directory
    }

    /// The dtype to write, if the recipe sets one.
    public var outputDType: DType? { outDType ?? dtype }

    public func resolve(_ path: String) -> URL {
        path.hasPrefix("/") ? URL(fileURLWithPath: path) : directory.appendingPathComponent(path).standardizedFileURL
    }

    public var modelURLs: [URL] { models.map { resolve($0.model) } }
    public var baseURL: URL? { baseModel.map(resolve) }

    // MARK: Loading

    public static func load(_ url: URL) throws -> MergeRecipe {
        let text: String
        do { text = try String(contentsOf: url, encoding: .utf8) } catch {
            throw MergeError("\(url.path): cannot be read (\(error.localizedDescription))")
        }
        return try parse(text, directory: url.deletingLastPathComponent(), file: url.path)
    }

    public static func parse(_ text: String, directory: URL, file: String = "recipe") throws -> MergeRecipe {
        let node: Any?
        do { node = try Yams.load(yaml: text) } catch {
            throw MergeError("\(file): not valid YAML (\(error))")
        }
        guard let root = node as? [String: Any] else { throw MergeError("\(file): expected a mapping with merge_method and models") }
        let known: Set<String> = ["merge_method", "models", "base_model", "parameters", "dtype", "out_dtype", "seed", "tokenizer_source", "name"]
        if let unknown = root.keys.sorted().first(where: { !known.contains($0) }) {
            throw MergeError("\(file): unsupported key '\(unknown)' (Basin reads \(known.sorted().joined(separator: ", ")); mergekit's slices are not supported)")
        }
        guard let methodName = root["merge_method"] as? String else { throw MergeError("\(file): missing merge_method") }
        guard let method = MergeMethod(rawValue: methodName) else {
            throw MergeError("\(file): unknown merge_method '\(methodName)' (Basin implements \(MergeMethod.allCases.map(\.rawValue).joined(separator: ", ")))")
        }
        var models: [ModelEntry] = []
        for (i, entry) in ((root["models"] as? [Any]) ?? []).enumerated() {
            if let path = entry as? String {
                models.append(ModelEntry(model: path))
                continue
            }
            guard let m = entry as? [String: Any], let path = stringValue(m["model"]) else {
                throw MergeError("\(file): models[\(i)] needs a 'model: path' entry")
            }
            let params = try parseParameters(m["parameters"], where: "\(file): models[\(i)].parameters")
            models.append(ModelEntry(model: path, parameters: params))
        }
        let base = stringValue(root["base_model"])
        // mergekit lists the base among the models too; it is not a task vector of itself.
        if let base, method.needsBase || method == .slerp {
            models.removeAll { $0.model == base }
        }
        guard !models.isEmpty || base != nil else { throw MergeError("\(file): no models to merge") }
        if method.needsBase && base == nil { throw MergeError("\(file): \(method.rawValue) needs base_model") }
        let parameters = try parseParameters(root["parameters"], where: "\(file): parameters")
        func dtype(_ key: String) throws -> DType? {
            guard let name = root[key] as? String else { return nil }
            guard let d = DType(name: name), d.isFloatingPoint else { throw MergeError("\(file): \(key) '\(name)' is not float32, float16, bfloat16 or float64") }
            return d
        }
        var seed: UInt64 = 0
        if let s = root["seed"] {
            guard let v = s as? Int, v >= 0 else { throw MergeError("\(file): seed must be a non-negative integer") }
            seed = UInt64(v)
        }
        return MergeRecipe(method: method, models: models, baseModel: base, parameters: parameters,
                           dtype: try dtype("dtype"), outDType: try dtype("out_dtype"), seed: seed, directory: directory)
    }

    private static func stringValue(_ any: Any?) -> String? {
        if let s = any as? String { return s }
        if let m = any as? [String: Any], let s = m["model"] as? String { return s }  // mergekit's {model: {path: ...}} variant
        return nil
    }

    private static func number(_ any: Any) -> Double? {
        if let b = any as? Bool { return b ? 1 : 0 }
        if let i = any as? Int { return Double(i) }
        if let d = any as? Double { return d }
        // Some YAML resolvers leave exponent forms without a dot ("1e-3") as strings.
        if let s = any as? String, let d = Double(s.trimmingCharacters(in: .whitespaces)) { return d }
        return nil
    }

    static func parseParameters(_ any: Any?, where location: String) throws -> [String: ParameterValue] {
        guard let any else { return [:] }
        guard let map = any as? [String: Any] else { throw MergeError("\(location): expected a mapping of parameter names to values") }
        var out: [String: ParameterValue] = [:]
        for (key, raw) in map {
            if let v = number(raw) {
                out[key] = .scalar(v)
            } else if let list = raw as? [Any] {
                var entries: [ParameterValue.FilteredValue] = []
                for item in list {
                    guard let m = item as? [String: Any], let v = m["value"].flatMap(number) else {
                        throw MergeError("\(location).\(key): list entries must be {filter: \"name part\", value: number} (mergekit's gradient lists of bare numbers are not supported)")
                    }
                    entries.append(.init(filter: m["filter"] as? String, value: v))
                }
                out[key] = .filtered(entries)
            } else {
                throw MergeError("\(location).\(key): expected a number, true/false or a list of {filter, value}")
            }
        }
        return out
    }

    // MARK: Per-tensor parameters

    private func global(_ key: String, _ name: String) -> Double? { parameters[key]?.value(for: name) }

    /// The parameters for one tensor: per-model `weight` and `density` (model entry, else the global
    /// `parameters`, else 1), `normalize`, `t`, `lambda`, `rescale`, resolved through their filters.
    public func tensorParameters(for name: String) -> TensorMergeParameters {
        let weights = models.map { Float($0.parameters["weight"]?.value(for: name) ?? global("weight", name) ?? 1) }
        let densities = models.map { Float($0.parameters["density"]?.value(for: name) ?? global("density", name) ?? 1) }
        return TensorMergeParameters(
            weights: weights, densities: densities,
            normalize: (global("normalize", name) ?? (method.defaultNormalize ? 1 : 0)) != 0,
            t: Float(global("t", name) ?? 0.5),
            lambda: Float(global("lambda", name) ?? 1),
            rescale: (global("rescale", name) ?? 1) != 0,
            seed: seed)
    }

    // MARK: Writing

    /// The recipe as YAML in mergekit's schema (paths as given, relative to the recipe's folder).
    public func yaml() -> String {
        func value(_ v: ParameterValue) -> String {
            switch v {
            case let .scalar(d): return format(d)
            case let .filtered(entries):
                return "[" + entries.map { e in
                    (e.filter.map { "{filter: \(quoted($0)), value: \(format(e.value))}" } ?? "{value: \(format(e.value))}")
                }.joined(separator: ", ") + "]"
            }
        }
        func params(_ p: [String: ParameterValue]) -> String {
            "{" + p.keys.sorted().map { "\($0): \(value(p[$0]!))" }.joined(separator: ", ") + "}"
        }
        var lines = ["merge_method: \(method.rawValue)"]
        if let baseModel { lines.append("base_model: \(quoted(baseModel))") }
        lines.append("models:")
        for m in models {
            lines.append("  - model: \(quoted(m.model))")
            if !m.parameters.isEmpty { lines.append("    parameters: \(params(m.parameters))") }
        }
        if !parameters.isEmpty { lines.append("parameters: \(params(parameters))") }
        if let dtype { lines.append("dtype: \(Self.mergekitName(dtype))") }
        if let outDType { lines.append("out_dtype: \(Self.mergekitName(outDType))") }
        if seed != 0 { lines.append("seed: \(seed)") }
        return lines.joined(separator: "\n") + "\n"
    }

    public static func mergekitName(_ d: DType) -> String {
        switch d {
        case .bf16: "bfloat16"
        case .f16: "float16"
        case .f64: "float64"
        default: "float32"
        }
    }

    private func format(_ d: Double) -> String {
        d == d.rounded() && abs(d) < 1e15 ? String(Int(d)) + ".0" : String(d)
    }

    private func quoted(_ s: String) -> String {
        let plain = s.allSatisfy { $0.isLetter || $0.isNumber || "._-/".contains($0) }
        return plain ? s : "\"" + s.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"") + "\""
    }
}
