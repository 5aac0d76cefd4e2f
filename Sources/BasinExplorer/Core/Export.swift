import BasinFusion
import BasinNet
import BasinUI
import Foundation

extension ExplorerApp {
    /// Writes what the current view shows (the soup in the soup view, else the model at the cursor on the path)
    /// with its recipe, and reports the outcome in a popup.
    mutating func export(to name: String) -> [Effect<ExplorerMessage>] {
        let trimmed = name.trimmingCharacters(in: .whitespaces)
        guard !trimmed.isEmpty else {
            state.popup = PopupState(title: "Export", message: "No file name given.", isError: true)
            return []
        }
        do {
            let params: ParameterSet
            let recipeText: String
            switch state.view {
            case .soup:
                params = try mergedSoup()
                let outcome = state.permutation.outcome
                recipeText = try engine.soupRecipe(state.soup.method, coefficients: state.soup.coefficients, lambda: state.soup.lambda,
                                                   density: state.soup.density).yaml()
                    + soupReplacements.keys.sorted().map {
                        "# model \($0 + 1) (\(engine.names[$0])) was permuted to align with \(engine.names[outcome?.a ?? 0]) (\(outcome?.report.method.rawValue ?? "") matching) before merging\n"
                    }.joined()
            default:
                params = try path(.path(state.path.type)).parameters(at: state.path.t)
                var recipe: [String: String] = ["models": "[" + engine.models.map(\.path).joined(separator: ", ") + "]",
                                                "tool": "basin explore"]
                recipe["kind"] = "path"
                recipe["path"] = state.path.type.rawValue
                recipe["t"] = String(format: "%.4g", state.path.t)
                recipe["selection"] = "\"\(state.selectionLabel)\""
                recipe["bends"] = state.path.fitted.contains(state.path.type) ? "fitted" : (state.path.type == .linear ? "none" : "midpoint")
                recipeText = engine.recipe(recipe)
            }
            let out = try engine.export(params, to: trimmed, recipe: recipeText)
            state.lastJobNote = "exported \(out.model.lastPathComponent)"
            state.popup = PopupState(title: "Exported", message: "Wrote \(out.model.path)\nand \(out.recipe.lastPathComponent)")
        } catch {
            state.popup = PopupState(title: "Export failed", message: "\(error)", isError: true)
        }
        return []
    }
}
