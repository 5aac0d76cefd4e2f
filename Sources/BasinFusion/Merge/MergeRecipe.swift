import BasinIO
import BasinTensor
import Foundation

/// A merge recipe in mergekit 0.1.5's configuration language (what `mergekit-yaml` reads):
///
/// ```yaml
/// merge_method: ties                 # any method mergekit registers, or fisher / regmean / basin_path
/// base_model: ./base                 # a Hugging Face folder, a .safetensors file or an index
/// models:                            # or `slices:` (below)
///   - model: ./a
///     parameters: {weight: 0.5, density: 0.7}
///   - model: ./b
///     parameters:
///       weight: [{filter: self_attn, value: [0, 0.5, 1]}, {value: 0.5}]   # filtered, gradient over layers
/// parameters: {normalize: true, lambda: 1.0}
/// dtype: float32
/// out_dtype: bfloat16
/// tokenizer_source: base
/// ```
///
/// Slices (passthrough "frankenmerges" and per-range merges):
///
/// ```yaml
/// slices:
///   - sources:
///       - model: ./a
///         layer_range: [0, 16]
///   - sources:
///       - model: ./b
///         layer_range: [8, 24]
/// merge_method: passthrough
/// ```
///
/// Relative model paths resolve against the working directory first (as mergekit does), then against the
/// recipe's folder. Keys Basin does not implement are errors that name them. Basin extensions (documented in
/// docs/merging.md): `seed` (DARE/DELLA masks; mergekit takes `--random-seed` instead and ignores the key) and
/// `merge_method: basin_path` with `basin_path: {type, bends}` (a point on a fitted path; mergekit rejects the
/// method by name).
public struct MergeRecipe: Sendable {
    public struct ModelEntry: Sendable, Equatable {
        public var model: String
        public var parameters: [String: ParameterValue]
        public init(model: String, parameters: [String: ParameterValue] = [:]) {
            self.model = model
            self.parameters = parameters
        }
    }

    /// One input of an output slice: layers [start, end) of a model.
    public struct SliceSource: Sendable, Equatable {
        public var model: String
        public var layerRange: Range<Int>
        public var parameters: [String: ParameterValue]
        public init(model: String, layerRange: Range<Int>, parameters: [String: ParameterValue] = [:]) {
            self.model = model
            self.layerRange = layerRange
            self.parameters = parameters
        }
    }

    /// One output slice: its sources are merged layer by layer (they must span the same number of layers).
    public struct Slice: Sendable, Equatable {
        public var sources: [SliceSource]
        public var baseModel: String?
        public var parameters: [String: ParameterValue]
        public init(sources: [SliceSource], baseModel: String? = nil, parameters: [String: ParameterValue] = [:]) {
            self.sources = sources
            self.baseModel = baseModel
            self.parameters = parameters
        }
    }

    public enum TokenizerSource: Sendable, Equatable {
        case base
        case model(String)
    }

    /// Basin's extension: a point on a path whose bends live in a bends file (`basin fit` writes them).
    public struct PathPoint: Sendable, Equatable {
        public var type: PathType
        /// The bends file (polychain / bezier); nil for a linear chain through the models.
        public var bends: String?
        public init(type: PathType, bends: String?) {
            self.type = type
            self.bends = bends
        }
    }

    public var method: MergeMethod
    /// The `models:` form (empty when the recipe uses slices). A base model may be listed here too.
    public var models: [ModelEntry]
    /// The `slices:` form (empty when the recipe uses models).
    public var slices: [Slice]
    public var baseModel: String?
    public var parameters: [String: ParameterValue]
    /// mergekit's `dtype`: what mergekit computes in. Basin always computes in Float32 and rounds once; without
    /// `out_dtype` this is also the written dtype.
    public var dtype: DType?
    /// mergekit's `out_dtype`; wins over `dtype` for the written file.
    public var outDType: DType?
    public var tokenizerSource: TokenizerSource?
    /// Basin extension: seed for random masks (mergekit: `--random-seed`).
    public var seed: UInt64
    public var pathPoint: PathPoint?
    /// Folder that relative model paths fall back to (the recipe file's folder).
    public var directory: URL
    /// The recipe file, for messages.
    public var file: String?

    public init(method: MergeMethod, models: [ModelEntry], baseModel: String? = nil, parameters: [String: ParameterValue] = [:],
                dtype: DType? = nil, outDType: DType? = nil, seed: UInt64 = 0,
                directory: URL = URL(fileURLWithPath: FileManager.default.currentDirectoryPath),
                slices: [Slice] = [], tokenizerSource: TokenizerSource? = nil, pathPoint: PathPoint? = nil, file: String? = nil) {
        self.method = method
        self.models = models
        self.slices = slices
        self.baseModel = baseModel
        self.parameters = parameters
        self.dtype = dtype
        self.outDType = outDType
        self.seed = seed
        self.directory = directory
        self.tokenizerSource = tokenizerSource
        self.pathPoint = pathPoint
        self.file = file
    }

    /// The dtype to write, if the recipe sets one.
    public var outputDType: DType? { outDType ?? dtype }

    /// Every model path the recipe names, base first, each once, in order of appearance.
    public var referencedModels: [String] {
        var out: [String] = []
        func add(_ s: String?) { if let s, !out.contains(s) { out.append(s) } }
        add(baseModel)
        for m in models { add(m.model) }
        for s in slices {
            add(s.baseModel)
            for src in s.sources { add(src.model) }
        }
        return out
    }

    /// The model donating config.json and the tokenizer: the base, else the first model named (as mergekit).
    public var donorModel: String? { baseModel ?? referencedModels.first }

    // MARK: Paths

    /// The places a model path may be: itself when absolute; else the working directory, then the recipe's folder.
    public func candidates(_ path: String) -> [URL] {
        let expanded = (path as NSString).expandingTildeInPath
        if expanded.isAbsolutePath { return [URL(fileURLWithPath: expanded).standardizedFileURL] }
        let cwd = URL(fileURLWithPath: FileManager.default.currentDirectoryPath)
        let here = cwd.appendingPathComponent(expanded).standardizedFileURL
        let beside = directory.appendingPathComponent(expanded).standardizedFileURL
        return here == beside ? [here] : [here, beside]
    }

    /// Where a model path points: the first candidate that exists (else the first candidate).
    public func resolve(_ path: String) -> URL {
        let c = candidates(path)
        return c.first { FileManager.default.fileExists(atPath: $0.path) } ?? c[0]
    }

    /// Resolves a model path or throws an error naming every place looked at.
    public func locate(_ path: String, key: String) throws -> URL {
        let c = candidates(path)
        if let hit = c.first(where: { FileManager.default.fileExists(atPath: $0.path) }) { return hit }
        let places = c.count == 1 ? "not at \(c[0].path)" : "neither at " + c.map(\.path).joined(separator: " nor ")
        let hub = !path.isAbsolutePath && !path.hasPrefix(".") && path.utf8.split(separator: UInt8(ascii: "/")).count == 2
            ? " (Basin reads local models only; download Hub models first, e.g. with `huggingface-cli download`)" : ""
        throw MergeError(.missingModel, file: file, key: key, "model '\(path)' is \(places)\(hub)")
    }

    /// The models of the `models:` form, resolved (base excluded when it is listed there and the method separates it).
    public var modelURLs: [URL] { inputModels.map { resolve($0.model) } }
    public var baseURL: URL? { baseModel.map(resolve) }

    /// The `models:` entries that are merged against the base (the base itself removed for methods that take it
    /// apart, as mergekit does).
    public var inputModels: [ModelEntry] {
        guard let baseModel, method.separatesBase else { return models }
        return models.filter { $0.model != baseModel }
    }

    // MARK: Loading

    public static func load(_ url: URL) throws -> MergeRecipe {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: url.path, isDirectory: &isDirectory) else {
            throw MergeError(.missingModel, file: url.path, "recipe does not exist")
        }
        guard !isDirectory.boolValue else { throw MergeError(.malformedRecipe, file: url.path, "is a folder, not a recipe file") }
        if let attributes = try? FileManager.default.attributesOfItem(atPath: url.path),
           let type = attributes[.type] as? FileAttributeType, type != .typeRegular {
            throw MergeError(.malformedRecipe, file: url.path, "is not a regular file (a FIFO or device?); refused")
        }
        if let size = (try? FileManager.default.attributesOfItem(atPath: url.path))?[.size] as? Int, size > RecipeYAML.maximumBytes {
            throw MergeError(.malformedRecipe, file: url.path, "is \(size) bytes; a recipe may be at most \(RecipeYAML.maximumBytes) bytes")
        }
        let text: String
        do { text = try String(contentsOf: url, encoding: .utf8) } catch {
            throw MergeError(.malformedRecipe, file: url.path, "cannot be read as UTF-8 text (\(error.localizedDescription))")
        }
        return try parse(text, directory: url.deletingLastPathComponent(), file: url.path)
    }

    public static func parse(_ text: String, directory: URL, file: String = "recipe") throws -> MergeRecipe {
        let root = try RecipeYAML.parse(text, file: file)
        do {
            return try RecipeParser(file: file, directory: directory).recipe(root)
        } catch let e as MergeError {
            throw e.inFile(file)
        }
    }
}

/// Turns the YAML tree into a recipe, checking every key and value (type, range, finiteness) and naming its path.
private struct RecipeParser {
    typealias Value = RecipeYAML.Value
    let file: String
    let directory: URL

    static let topLevel = ["merge_method", "base_model", "models", "slices", "parameters", "dtype", "out_dtype",
                           "tokenizer_source", "seed", "basin_path"]
    static let unsupportedTopLevel: [String: String] = [
        "modules": "mergekit's per-module configuration (multi-module models) is not supported; use models: or slices:",
        "tokenizer": "building merged tokenizers (tokenizer: {source, tokens}) is not supported; use tokenizer_source: base or a model",
        "chat_template": "chat templates belong to tokenizer building, which Basin does not do",
    ]

    func fail(_ kind: MergeError.Kind, _ key: String?, _ problem: String) -> MergeError {
        MergeError(kind, file: file, key: key, problem)
    }

    func recipe(_ root: Value) throws -> MergeRecipe {
        guard case .map = root else {
            throw fail(.malformedRecipe, nil, "expected a mapping with merge_method and models (or slices); found \(root.typeName)")
        }
        for key in root.keys where !Self.topLevel.contains(key) {
            if let why = Self.unsupportedTopLevel[key] { throw fail(.unsupported, key, why) }
            throw fail(.unknownKey, key, "unknown key (a recipe has \(Self.topLevel.joined(separator: ", ")))")
        }
        guard let methodValue = root["merge_method"] else { throw fail(.missingValue, "merge_method", "missing (e.g. merge_method: linear)") }
        guard case let .string(methodName) = methodValue else {
            throw fail(.invalidValue, "merge_method", "must be a method name; found \(methodValue.typeName)")
        }
        guard let method = MergeMethod(rawValue: methodName) else {
            throw fail(.unknownKey, "merge_method", "unknown method '\(methodName)' (Basin implements \(MergeMethod.allCases.map(\.rawValue).joined(separator: ", ")))")
        }
        let base = try root["base_model"].map { try modelReference($0, key: "base_model") }
        var models: [MergeRecipe.ModelEntry] = []
        var slices: [MergeRecipe.Slice] = []
        switch (root["models"], root["slices"]) {
        case (nil, nil):
            throw fail(.missingValue, "models", "missing: a recipe needs models: (a list of models) or slices:")
        case (.some, .some):
            throw fail(.invalidValue, "slices", "a recipe has models: or slices:, not both (as mergekit requires)")
        case let (.some(m), nil):
            models = try modelList(m, method: method)
        case let (nil, .some(s)):
            slices = try sliceList(s, method: method, globalBase: base)
        }
        let parameters = try parameterMap(root["parameters"], key: "parameters", method: method, level: .global)
        let dtype = try root["dtype"].map { try dtypeValue($0, key: "dtype") }
        let outDType = try root["out_dtype"].map { try dtypeValue($0, key: "out_dtype") }
        var tokenizer: MergeRecipe.TokenizerSource?
        if let t = root["tokenizer_source"] {
            guard case let .string(s) = t else { throw fail(.invalidValue, "tokenizer_source", "must be base or a model path; found \(t.typeName)") }
            switch s {
            case "union":
                throw fail(.unsupported, "tokenizer_source", "'union' builds a merged vocabulary and permutes the embeddings, which Basin does not do; use base or a model path (every model must then share that vocabulary)")
            case "base": tokenizer = .base
            default: tokenizer = .model(try modelReference(t, key: "tokenizer_source"))
            }
        }
        var seed: UInt64 = 0
        if let s = root["seed"] {
            guard case let .number(v) = s, v >= 0, v < 1.8e19, v == v.rounded() else {
                throw fail(.invalidValue, "seed", "must be a non-negative whole number")
            }
            seed = UInt64(v)
        }
        var pathPoint: MergeRecipe.PathPoint?
        if let p = root["basin_path"] {
            guard method == .basinPath else { throw fail(.unknownKey, "basin_path", "belongs to merge_method: basin_path") }
            pathPoint = try pathPointValue(p)
        } else if method == .basinPath {
            throw fail(.missingValue, "basin_path", "merge_method basin_path needs basin_path: {type: linear | polychain | bezier, bends: FILE}")
        }
        // Method-level checks that need no tensors.
        if method.needsBase && base == nil && slices.allSatisfy({ $0.baseModel == nil }) {
            throw fail(.missingValue, "base_model", "\(method.rawValue) needs a base_model (\(method.isTaskArithmeticFamily ? "task vectors are taken against it" : "it is one end of the merge"))")
        }
        if !models.isEmpty {
            var seen = Set<String>()
            for (i, m) in models.enumerated() where !seen.insert(m.model).inserted {
                throw fail(.invalidValue, "models[\(i)].model", "'\(m.model)' is listed twice")
            }
            let inputs = models.filter { $0.model != base }.count
            try checkModelCount(method, inputs: inputs, hasBase: base != nil, key: "models")
        }
        return MergeRecipe(method: method, models: models, baseModel: base, parameters: parameters, dtype: dtype, outDType: outDType,
                           seed: seed, directory: directory, slices: slices, tokenizerSource: tokenizer, pathPoint: pathPoint, file: file)
    }

    /// mergekit's fixed model counts (it fails at merge time; Basin says so before).
    func checkModelCount(_ method: MergeMethod, inputs: Int, hasBase: Bool, key: String) throws {
        switch method {
        case .slerp, .arceeFusion:
            guard hasBase && inputs == 1 else {
                throw fail(.methodFailed, key, "\(method.rawValue) merges exactly two models: base_model (the t = 0 end) and one other; the recipe gives \(inputs + (hasBase ? 1 : 0))")
            }
        case .nearswap:
            guard hasBase && inputs == 1 else { throw fail(.methodFailed, key, "nearswap merges base_model with exactly one other model; the recipe gives \(inputs) other(s)") }
        case .nuslerp:
            guard inputs == 2 else { throw fail(.methodFailed, key, "nuslerp merges exactly two models (plus an optional base_model); the recipe gives \(inputs)") }
        case .modelStock:
            guard inputs >= 2 else { throw fail(.methodFailed, key, "model_stock needs base_model and at least two other models; the recipe gives \(inputs)") }
        case .passthrough:
            guard inputs + (hasBase ? 1 : 0) == 1 else {
                throw fail(.methodFailed, key, "passthrough copies exactly one model per slice; the recipe gives \(inputs + (hasBase ? 1 : 0)) (use slices: to stack layers of several models)")
            }
        case .basinPath:
            guard inputs >= 2 && !hasBase else { throw fail(.methodFailed, key, "basin_path needs the path's two end models (at least two models, no base_model)") }
        default:
            guard inputs >= 1 || hasBase else { throw fail(.noEffect, key, "no models to merge") }
        }
    }

    // MARK: Models and slices

    func modelReference(_ v: Value, key: String) throws -> String {
        switch v {
        case let .string(s):
            guard !s.isEmpty else { throw fail(.invalidValue, key, "is an empty model path") }
            if s.contains("+") && !FileManager.default.fileExists(atPath: s) {
                throw fail(.unsupported, key, "'\(s)' names a LoRA adapter (model+lora); merging adapters in is not supported: merge the LoRA into its model first")
            }
            if s.contains("@") && !FileManager.default.fileExists(atPath: s) {
                throw fail(.unsupported, key, "'\(s)' names a Hub revision (model@revision); Basin reads local models only")
            }
            return s
        case let .map(pairs):
            for (k, _) in pairs where k != "model" {
                if k == "lora" { throw fail(.unsupported, "\(key).lora", "LoRA adapters are not supported: merge the LoRA into its model first") }
                if k == "override_architecture" { throw fail(.unsupported, "\(key).override_architecture", "architecture overrides are not supported") }
                throw fail(.unknownKey, "\(key).\(k)", "unknown key in a model reference (expected model: PATH)")
            }
            guard let inner = v["model"] else { throw fail(.missingValue, "\(key).model", "missing the model path") }
            if case let .map(p) = inner {
                for (k, _) in p where k != "path" {
                    if k == "revision" { throw fail(.unsupported, "\(key).model.revision", "Hub revisions are not supported; Basin reads local models only") }
                    throw fail(.unknownKey, "\(key).model.\(k)", "unknown key in a model path (expected path: PATH)")
                }
                guard let path = inner["path"] else { throw fail(.missingValue, "\(key).model.path", "missing") }
                return try modelReference(path, key: "\(key).model.path")
            }
            return try modelReference(inner, key: "\(key).model")
        default:
            throw fail(.invalidValue, key, "must be a model path; found \(v.typeName)")
        }
    }

    func modelList(_ v: Value, method: MergeMethod) throws -> [MergeRecipe.ModelEntry] {
        guard case let .list(items) = v else {
            throw fail(.invalidValue, "models", "must be a list of models (- model: PATH); found \(v.typeName)")
        }
        guard !items.isEmpty else { throw fail(.noEffect, "models", "is empty: nothing to merge") }
        return try items.enumerated().map { i, item in
            let key = "models[\(i)]"
            if case .string = item { return MergeRecipe.ModelEntry(model: try modelReference(item, key: key)) }
            guard case .map = item else { throw fail(.invalidValue, key, "must be - model: PATH (with optional parameters:); found \(item.typeName)") }
            for k in item.keys where k != "model" && k != "parameters" {
                if k == "lora" { throw fail(.unsupported, "\(key).lora", "LoRA adapters are not supported: merge the LoRA into its model first") }
                throw fail(.unknownKey, "\(key).\(k)", "unknown key in a model entry (expected model and parameters)")
            }
            guard let m = item["model"] else { throw fail(.missingValue, "\(key).model", "missing the model path") }
            return MergeRecipe.ModelEntry(model: try modelReference(m, key: "\(key).model"),
                                          parameters: try parameterMap(item["parameters"], key: "\(key).parameters", method: method, level: .model))
        }
    }

    func sliceList(_ v: Value, method: MergeMethod, globalBase: String?) throws -> [MergeRecipe.Slice] {
        guard case let .list(items) = v, !items.isEmpty else {
            throw fail(.invalidValue, "slices", "must be a non-empty list of - sources: [...]")
        }
        return try items.enumerated().map { i, item in
            let key = "slices[\(i)]"
            guard case .map = item else { throw fail(.invalidValue, key, "must be a mapping with sources:; found \(item.typeName)") }
            for k in item.keys where !["sources", "base_model", "parameters"].contains(k) {
                if k == "residual_weight" { throw fail(.unsupported, "\(key).residual_weight", "mergekit 0.1.5 reads residual_weight but never uses it; remove it") }
                throw fail(.unknownKey, "\(key).\(k)", "unknown key in a slice (expected sources, base_model, parameters)")
            }
            guard case let .list(sources)? = item["sources"], !sources.isEmpty else {
                throw fail(.missingValue, "\(key).sources", "a slice needs a non-empty list of sources")
            }
            let parsed: [MergeRecipe.SliceSource] = try sources.enumerated().map { j, s in
                let sk = "\(key).sources[\(j)]"
                guard case .map = s else { throw fail(.invalidValue, sk, "must be - model: PATH with layer_range: [start, end]") }
                for k in s.keys where !["model", "layer_range", "parameters"].contains(k) {
                    throw fail(.unknownKey, "\(sk).\(k)", "unknown key in a slice source (expected model, layer_range, parameters)")
                }
                guard let m = s["model"] else { throw fail(.missingValue, "\(sk).model", "missing the model path") }
                guard case let .list(r)? = s["layer_range"], r.count == 2, case let .number(a) = r[0], case let .number(b) = r[1],
                      a == a.rounded(), b == b.rounded(), a >= 0, b > a, b < 1e6 else {
                    throw fail(.invalidValue, "\(sk).layer_range", "must be [start, end] with whole numbers 0 <= start < end")
                }
                return MergeRecipe.SliceSource(model: try modelReference(m, key: "\(sk).model"), layerRange: Int(a)..<Int(b),
                                               parameters: try parameterMap(s["parameters"], key: "\(sk).parameters", method: method, level: .model))
            }
            let lengths = Set(parsed.map(\.layerRange.count))
            guard lengths.count == 1 else {
                throw fail(.incompatibleModels, "\(key).sources", "every source of a slice must span the same number of layers (found \(lengths.sorted()))")
            }
            let base = try item["base_model"].map { try modelReference($0, key: "\(key).base_model") }
            // In slices, mergekit does not add the base model to the sources: it must be one of them.
            let effectiveBase = method.separatesBase ? (base ?? globalBase) : nil
            let hasBase = effectiveBase.map { b in parsed.contains { $0.model == b } } ?? false
            if method.needsBase && !hasBase {
                throw fail(.missingValue, "\(key).sources", "\(method.rawValue) needs the base model (\(effectiveBase ?? "none given")) among the slice's sources")
            }
            let inputs = parsed.count - (hasBase ? 1 : 0)
            try checkModelCount(method, inputs: inputs, hasBase: hasBase, key: "\(key).sources")
            return MergeRecipe.Slice(sources: parsed, baseModel: base,
                                     parameters: try parameterMap(item["parameters"], key: "\(key).parameters", method: method, level: .global))
        }
    }

    // MARK: Parameters

    enum Level { case global, model }

    func parameterMap(_ v: Value?, key: String, method: MergeMethod, level: Level) throws -> [String: ParameterValue] {
        guard let v else { return [:] }
        if case .null = v { return [:] }
        guard case let .map(pairs) = v else { throw fail(.invalidValue, key, "must be a mapping of parameter names to values; found \(v.typeName)") }
        var out: [String: ParameterValue] = [:]
        for (name, raw) in pairs {
            let path = "\(key).\(name)"
            guard let def = method.parameter(name) else {
                let known = method.parameters.map(\.name)
                throw fail(.unknownKey, path, "\(method.rawValue) has no parameter '\(name)'" + (known.isEmpty ? " (it takes none)" : " (it reads \(known.joined(separator: ", ")))"))
            }
            if level == .model && !def.perModel {
                throw fail(.invalidValue, path, "'\(name)' is a merge-wide parameter of \(method.rawValue): set it under the recipe's (or a slice's) parameters, not a model's")
            }
            out[name] = try parameterValue(raw, key: path, def: def)
        }
        return out
    }

    func parameterValue(_ v: Value, key: String, def: MergeMethod.Parameter) throws -> ParameterValue {
        switch v {
        case .list(let items) where items.allSatisfy({ if case .map = $0 { return true } else { return false } }) && !items.isEmpty:
            let entries: [ParameterValue.FilteredValue] = try items.enumerated().map { i, item in
                let ik = "\(key)[\(i)]"
                for k in item.keys where k != "filter" && k != "value" {
                    throw fail(.unknownKey, "\(ik).\(k)", "unknown key in a filtered value (expected filter and value)")
                }
                var filter: String?
                if let f = item["filter"] {
                    switch f {
                    case let .string(s): filter = s
                    case .null: filter = nil
                    default: throw fail(.invalidValue, "\(ik).filter", "must be a string (part of a tensor name); found \(f.typeName)")
                    }
                }
                guard let value = item["value"] else { throw fail(.missingValue, "\(ik).value", "missing") }
                return .init(filter: filter, value: try plainValue(value, key: "\(ik).value", def: def))
            }
            return .filtered(entries)
        case .map:
            throw fail(.invalidValue, key, "a single {filter, value} must be written as a list: [{filter: ..., value: ...}] (mergekit fails on the bare mapping at merge time)")
        default:
            return try plainValue(v, key: key, def: def)
        }
    }

    /// A scalar, boolean or gradient, type- and range-checked for the parameter.
    func plainValue(_ v: Value, key: String, def: MergeMethod.Parameter) throws -> ParameterValue {
        func number(_ v: Value, _ k: String) throws -> Double {
            var d: Double
            switch v {
            case let .number(x): d = x
            case let .bool(b) where def.kind == .boolean: d = b ? 1 : 0
            // PyYAML (and Yams) read exponents without a dot ("1e-3") as strings; pydantic then coerces them.
            case let .string(s) where Double(s.trimmingCharacters(in: .whitespaces)) != nil && def.kind != .boolean:
                d = Double(s.trimmingCharacters(in: .whitespaces))!
            default:
                throw fail(.invalidValue, k, "must be \(def.kind == .boolean ? "true or false" : "a number"); found \(v.typeName)")
            }
            guard d.isFinite else { throw fail(.invalidValue, k, "is \(d); values must be finite") }
            switch def.kind {
            case .boolean:
                guard d == 0 || d == 1 else { throw fail(.invalidValue, k, "must be true or false (found \(d))") }
            case .count:
                guard d == d.rounded() else { throw fail(.invalidValue, k, "must be a whole number (found \(d))") }
                fallthrough
            case .number:
                guard def.range.contains(d) else {
                    throw fail(.invalidValue, k, "is \(d), outside the allowed range [\(fmt(def.range.lowerBound)), \(fmt(def.range.upperBound))] for \(def.name)")
                }
            }
            return d
        }
        switch v {
        case let .bool(b):
            guard def.kind == .boolean else { throw fail(.invalidValue, key, "must be a number; found a boolean") }
            return .boolean(b)
        case let .list(items):
            guard def.kind != .boolean else { throw fail(.invalidValue, key, "\(def.name) is true or false; a gradient list makes no sense here") }
            guard !items.isEmpty else { throw fail(.invalidValue, key, "is an empty list") }
            return .gradient(try items.enumerated().map { try number($1, "\(key)[\($0)]") })
        default:
            let d = try number(v, key)
            return def.kind == .boolean ? .boolean(d != 0) : .scalar(d)
        }
    }

    func fmt(_ d: Double) -> String { d == d.rounded() && abs(d) < 1e15 ? String(Int(d)) : String(d) }

    func dtypeValue(_ v: Value, key: String) throws -> DType {
        guard case var .string(name) = v else { throw fail(.invalidValue, key, "must be a dtype name such as bfloat16; found \(v.typeName)") }
        if name.hasPrefix("torch.") { name.removeFirst(6) }
        guard let d = DType(name: name), d.isFloatingPoint else {
            throw fail(.invalidValue, key, "'\(name)' is not float32, float16, bfloat16 or float64")
        }
        return d
    }

    func pathPointValue(_ v: Value) throws -> MergeRecipe.PathPoint {
        guard case .map = v else { throw fail(.invalidValue, "basin_path", "must be {type: linear | polychain | bezier, bends: FILE}") }
        for k in v.keys where k != "type" && k != "bends" { throw fail(.unknownKey, "basin_path.\(k)", "unknown key (expected type, bends)") }
        guard case let .string(t)? = v["type"], let type = PathType(rawValue: t) else {
            throw fail(.invalidValue, "basin_path.type", "must be linear, polychain or bezier")
        }
        var bends: String?
        if let b = v["bends"] {
            guard case let .string(s) = b else { throw fail(.invalidValue, "basin_path.bends", "must be the path of a bends file") }
            bends = s
        }
        if type != .linear && bends == nil { throw fail(.missingValue, "basin_path.bends", "a \(t) path needs its bends file") }
        if type == .linear && bends != nil { throw fail(.invalidValue, "basin_path.bends", "a linear path has no bends") }
        return MergeRecipe.PathPoint(type: type, bends: bends)
    }
}

// MARK: Shadowed filters

extension MergeRecipe {
    /// Entries of filtered parameter lists that can never apply. mergekit's `evaluate_setting` takes the first entry
    /// whose filter matches (no filter, `*` or an empty filter match every tensor; otherwise the filter is a substring
    /// of the name), so an entry after a catch-all, or after a filter that is a substring of its own, is dead. mergekit
    /// accepts such recipes silently and Basin runs them the same way; each line names the parameter, the shadowed entry
    /// and the entry shadowing it, for the command to print as a warning.
    public var shadowedFilterWarnings: [String] {
        var out: [String] = []
        func check(_ parameters: [String: ParameterValue], at prefix: String) {
            for name in parameters.keys.sorted() {
                guard case let .filtered(entries)? = parameters[name] else { continue }
                let key = prefix + "parameters." + name
                for (j, later) in entries.enumerated() {
                    guard let i = entries[..<j].firstIndex(where: { Self.filter($0.filter, covers: later.filter) }) else { continue }
                    let all = Self.isCatchAll(entries[i].filter)
                    out.append("\(file.map { "\($0): " } ?? "")\(key)[\(j)] (\(Self.describe(later.filter))) never applies: \(key)[\(i)] (\(Self.describe(entries[i].filter))) comes first and matches "
                               + (all ? "every tensor" : "every tensor it matches") + " (mergekit takes the first entry that matches, and accepts this silently)")
                }
            }
        }
        check(parameters, at: "")
        for (i, m) in models.enumerated() { check(m.parameters, at: "models[\(i)].") }
        for (i, s) in slices.enumerated() {
            check(s.parameters, at: "slices[\(i)].")
            for (j, src) in s.sources.enumerated() { check(src.parameters, at: "slices[\(i)].sources[\(j)].") }
        }
        return out
    }

    static func isCatchAll(_ filter: String?) -> Bool { filter == nil || filter == "*" || filter == "" }

    /// Whether every tensor name `later` matches is matched by `earlier` too.
    static func filter(_ earlier: String?, covers later: String?) -> Bool {
        if isCatchAll(earlier) { return true }
        guard let earlier, let later, !isCatchAll(later) else { return false }
        return later.contains(earlier)
    }

    static func describe(_ filter: String?) -> String { filter.map { "filter: \(quoted($0))" } ?? "no filter" }
}
