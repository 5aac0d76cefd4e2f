import BasinIO
import BasinNet
import BasinTensor
import Foundation

/// Exports that carry the recipe that rebuilds them: the model is made from the recipe by the streaming executor
/// itself, so `basin merge NAME.recipe.yaml` writes the same tensors bit for bit, and the recipe sits beside it.
public enum RecipeExport {
    /// Writes `recipe` as `NAME.recipe.yaml` beside `model` (a `.safetensors` file or a folder) and builds the model
    /// from it. Inputs named in `protecting` (and the recipe's own inputs) are never overwritten.
    @discardableResult
    public static func export(_ recipe: MergeRecipe, to model: URL, options: MergeRunOptions = MergeRunOptions()) throws -> (model: URL, recipe: URL) {
        let recipeURL = recipeLocation(for: model)
        let plan = try MergePlan(recipe: recipe)
        do { try OutputGuard.check(output: recipeURL, inputs: plan.inputFiles) } catch let e as BasinIOError {
            throw MergeError(.output, file: e.file, e.problem)
        }
        _ = try MergeExecutor.run(plan, out: model, options: options)
        do { try recipe.yaml().write(to: recipeURL, atomically: true, encoding: .utf8) } catch {
            throw MergeError(.output, file: recipeURL.path, "cannot be written (\(error.localizedDescription))")
        }
        return (model, recipeURL)
    }

    /// `NAME.recipe.yaml` beside `NAME.safetensors` (or beside folder `NAME`).
    public static func recipeLocation(for model: URL) -> URL {
        let stem = model.pathExtension == "safetensors" ? model.deletingPathExtension() : model
        return stem.deletingLastPathComponent().appendingPathComponent(stem.lastPathComponent + ".recipe.yaml")
    }

    /// A file beside the export for something the recipe needs (an aligned copy of a model, a bends file).
    public static func companion(of model: URL, _ suffix: String) -> URL {
        let stem = model.pathExtension == "safetensors" ? model.deletingPathExtension() : model
        return stem.deletingLastPathComponent().appendingPathComponent(stem.lastPathComponent + "." + suffix + ".safetensors")
    }

    /// The point at `t` on a path whose control points are all model files, as mergekit's `linear` with the path's
    /// coefficients as weights (`normalize: false`; models with coefficient 0 left out). `midpointBends` lists, for
    /// polychain / Bezier paths between models[0] and models[1], the positions s of unfitted bends on the segment
    /// ((1 - s) A + s B), which fold into the two endpoints' weights.
    public static func pathPointRecipe(type: PathType, models: [String], t: Double, midpointBends: [Double] = []) -> MergeRecipe {
        var weights: [Double]
        if midpointBends.isEmpty {
            weights = ModelPath.weights(type: type, count: models.count, at: t)
        } else {
            let c = ModelPath.weights(type: type, count: midpointBends.count + 2, at: t)
            var a = c[0], b = c[c.count - 1]
            for (j, s) in midpointBends.enumerated() {
                a += c[j + 1] * (1 - s)
                b += c[j + 1] * s
            }
            weights = [a, b]
        }
        let entries = zip(models, weights).filter { $0.1 != 0 }.map { MergeRecipe.ModelEntry(model: $0.0, parameters: ["weight": .scalar($0.1)]) }
        return MergeRecipe(method: .linear, models: entries, parameters: ["normalize": .boolean(false)])
    }

    /// The point at `t` on a polychain / Bezier path with fitted bends: writes the bends file beside the export and
    /// returns Basin's `basin_path` recipe over it (mergekit cannot express a bend that is no model file, and rejects
    /// the method by name).
    public static func fittedPathRecipe(type: PathType, from a: URL, to b: URL, bends: [ParameterSet], t: Double, model: URL) throws -> MergeRecipe {
        let bendsURL = companion(of: model, "bends")
        let start = try ModelFile.open(a), end = try ModelFile.open(b)
        let path = try ModelPath.withBends(type, from: ParameterSetSource.load(start), to: ParameterSetSource.load(end), bends: bends)
        let dtypes = Dictionary(start.names.compactMap { n in start.info(n).map { (n, $0.dtype) } }, uniquingKeysWith: { a, _ in a })
        try BendsFile.write(path, to: bendsURL, startSHA256: try FileDigest.sha256(of: start), endSHA256: try FileDigest.sha256(of: end),
                            modelDTypes: dtypes, protecting: start.files + end.files)
        return MergeRecipe(method: .basinPath, models: [.init(model: a.path), .init(model: b.path)], parameters: ["t": .scalar(t)],
                           pathPoint: .init(type: type, bends: bendsURL.path))
    }
}

extension ParameterSetSource {
    /// Every tensor of a source decoded to Float32, as a parameter set.
    static func load(_ source: any TensorSource) throws -> ParameterSet {
        var p = ParameterSet()
        for name in source.names { p[name] = try source.tensor(name) }
        return p
    }
}
