import BasinFusion
import Foundation
import XCTest

/// Filter entries that can never apply: accepted and run as mergekit runs them (first match wins), and named.
final class ShadowedFilterTests: XCTestCase {
    func testEntriesAfterACatchAllOrAWiderFilterAreNamedWithWhatShadowsThem() throws {
        let recipe = try MergeRecipe.parse("""
        merge_method: slerp
        base_model: a
        models:
          - model: a
          - model: b
        parameters:
          t:
            - filter: mlp
              value: 0.1
            - filter: mlp.up_proj
              value: 0.2
            - value: 0.5
            - filter: self_attn
              value: 0.9
        """, directory: URL(fileURLWithPath: "/models"), file: "r.yml")
        XCTAssertEqual(recipe.shadowedFilterWarnings, [
            "r.yml: parameters.t[1] (filter: mlp.up_proj) never applies: parameters.t[0] (filter: mlp) comes first and matches every tensor it matches (mergekit takes the first entry that matches, and accepts this silently)",
            "r.yml: parameters.t[3] (filter: self_attn) never applies: parameters.t[2] (no filter) comes first and matches every tensor (mergekit takes the first entry that matches, and accepts this silently)",
        ])
        // Run as mergekit runs it: the first match wins.
        let t = try XCTUnwrap(recipe.parameters["t"])
        XCTAssertEqual(t.value(for: "model.layers.0.mlp.up_proj.weight"), 0.1)
        XCTAssertEqual(t.value(for: "model.layers.0.self_attn.q_proj.weight"), 0.5)
    }

    func testStarAndPerModelAndSliceListsAreCheckedAndOrderedListsAreNot() throws {
        let recipe = try MergeRecipe.parse("""
        merge_method: linear
        models:
          - model: a
            parameters:
              weight:
                - filter: "*"
                  value: 1.0
                - filter: lm_head
                  value: 0.0
          - model: b
            parameters:
              weight:
                - filter: lm_head
                  value: 0.0
                - filter: mlp
                  value: 2.0
                - value: 1.0
        """, directory: URL(fileURLWithPath: "/models"))
        XCTAssertEqual(recipe.shadowedFilterWarnings.count, 1)
        XCTAssertTrue(recipe.shadowedFilterWarnings[0].hasPrefix("recipe: models[0].parameters.weight[1] (filter: lm_head) never applies: models[0].parameters.weight[0] (filter: \"*\")"),
                      recipe.shadowedFilterWarnings[0])
        let slices = try MergeRecipe.parse("""
        merge_method: slerp
        slices:
          - sources:
              - {model: a, layer_range: [0, 2]}
              - {model: b, layer_range: [0, 2]}
            base_model: a
            parameters:
              t: [{value: 0.3}, {filter: mlp, value: 0.7}]
        """, directory: URL(fileURLWithPath: "/models"))
        XCTAssertEqual(slices.shadowedFilterWarnings.count, 1)
        XCTAssertTrue(slices.shadowedFilterWarnings[0].contains("slices[0].parameters.t[1] (filter: mlp) never applies: slices[0].parameters.t[0] (no filter)"),
                      slices.shadowedFilterWarnings[0])
    }
}
