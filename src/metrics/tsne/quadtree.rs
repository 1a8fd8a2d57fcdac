//! The Barnes-Hut quadtree over a 2-D embedding: each cell keeps its point count and centre of
//! mass, so the repulsion from a far cell (width / distance < theta) is computed as if all its
//! points sat at that centre (van der Maaten, "Accelerating t-SNE using tree-based algorithms",
//! JMLR 2014). With `theta = 0` every leaf is visited and the repulsion is exact.

/// Depth past which points are merged into one leaf: deeper cells would be narrower than the
/// float resolution of any useful embedding, and it bounds the recursion.
const MAX_DEPTH: u32 = 48;
/// `first_child` of a leaf.
const LEAF: u32 = u32::MAX;

#[derive(Debug, Clone)]
struct Cell {
    centre: [f64; 2],
    half_width: f64,
    /// Sum of the points (each counted once).
    mass_centre: [f64; 2],
    count: u32,
    /// The four children are stored consecutively from here (quadrant = x_high + 2 * y_high).
    first_child: u32,
    /// Where the points of a non-empty leaf are (the first one, when merged).
    position: [f64; 2],
}

impl Cell {
    fn empty(centre: [f64; 2], half_width: f64) -> Self {
        Cell {
            centre,
            half_width,
            mass_centre: [0.0; 2],
            count: 0,
            first_child: LEAF,
            position: [0.0; 2],
        }
    }

    fn add(&mut self, point: [f64; 2]) {
        self.mass_centre[0] += point[0];
        self.mass_centre[1] += point[1];
        self.count += 1;
    }

    fn quadrant(&self, point: [f64; 2]) -> u32 {
        u32::from(point[0] >= self.centre[0]) + 2 * u32::from(point[1] >= self.centre[1])
    }
}

/// A cell as the force computation reads it: only what it needs, non-empty cells only, each
/// cell's children stored together and subtrees close to each other (depth-first), so a
/// traversal touches few cache lines.
#[derive(Debug, Clone)]
struct Node {
    mass_centre: [f64; 2],
    /// Squared width of the cell.
    width2: f64,
    count: f64,
    first_child: u32,
    children: u32,
}

/// A quadtree built from scratch for one gradient evaluation.
pub(super) struct QuadTree {
    nodes: Vec<Node>,
}

impl QuadTree {
    /// Builds the tree over `points`, `[n, 2]` row-major.
    pub fn build(points: &[f64]) -> Self {
        if points.is_empty() {
            return QuadTree { nodes: Vec::new() };
        }
        let (centre, half_width) = bounding_square(points);
        let mut builder = Builder {
            cells: Vec::with_capacity(2 * points.len()),
        };
        builder.cells.push(Cell::empty(centre, half_width));
        for point in points.chunks_exact(2) {
            builder.insert([point[0], point[1]]);
        }
        let mut nodes = vec![builder.node(0)];
        builder.lay_out_children(0, 0, &mut nodes);
        QuadTree { nodes }
    }

    /// The repulsion on `point`: `(sum_j q_j^2 (point - y_j), sum_j q_j)` with the unnormalised
    /// Student-t kernel `q_j = 1 / (1 + |point - y_j|^2)`, over every point in the tree,
    /// including `point` itself when it is in the tree (that term is exactly `(0, 1)`).
    pub fn repulsion(&self, point: [f64; 2], theta: f64) -> ([f64; 2], f64) {
        let mut force = [0.0; 2];
        let mut kernel_sum = 0.0;
        if !self.nodes.is_empty() {
            self.accumulate(0, point, theta * theta, &mut force, &mut kernel_sum);
        }
        (force, kernel_sum)
    }

    fn accumulate(
        &self,
        index: usize,
        point: [f64; 2],
        theta2: f64,
        force: &mut [f64; 2],
        kernel_sum: &mut f64,
    ) {
        let node = &self.nodes[index];
        let dx = point[0] - node.mass_centre[0];
        let dy = point[1] - node.mass_centre[1];
        let d2 = dx * dx + dy * dy;
        if node.children == 0 || node.width2 < theta2 * d2 {
            let q = 1.0 / (1.0 + d2);
            let weighted = node.count * q;
            *kernel_sum += weighted;
            force[0] += weighted * q * dx;
            force[1] += weighted * q * dy;
        } else {
            for child in node.first_child..node.first_child + node.children {
                self.accumulate(child as usize, point, theta2, force, kernel_sum);
            }
        }
    }
}

/// The tree while points are inserted: a fixed 4-way split per cell, empty cells included.
struct Builder {
    cells: Vec<Cell>,
}

impl Builder {
    fn insert(&mut self, point: [f64; 2]) {
        let (mut index, mut depth) = (0usize, 0u32);
        loop {
            let cell = &mut self.cells[index];
            if cell.first_child != LEAF {
                cell.add(point);
                index = (cell.first_child + cell.quadrant(point)) as usize;
                depth += 1;
            } else if cell.count == 0 {
                cell.position = point;
                cell.add(point);
                return;
            } else if cell.position == point || depth >= MAX_DEPTH {
                cell.add(point);
                return;
            } else {
                self.split(index);
            }
        }
    }

    /// Turns a non-empty leaf into an internal cell whose points move to one new child.
    fn split(&mut self, index: usize) {
        let first = self.cells.len() as u32;
        let parent = self.cells[index].clone();
        let quarter = parent.half_width / 2.0;
        for quadrant in 0..4u32 {
            let dx = if quadrant & 1 == 1 { quarter } else { -quarter };
            let dy = if quadrant & 2 == 2 { quarter } else { -quarter };
            self.cells.push(Cell::empty(
                [parent.centre[0] + dx, parent.centre[1] + dy],
                quarter,
            ));
        }
        let child = &mut self.cells[(first + parent.quadrant(parent.position)) as usize];
        child.position = parent.position;
        child.mass_centre = parent.mass_centre;
        child.count = parent.count;
        self.cells[index].first_child = first;
    }

    /// The summary of cell `index` (mean position, squared width, count), children not yet set.
    fn node(&self, index: usize) -> Node {
        let cell = &self.cells[index];
        let count = f64::from(cell.count);
        Node {
            mass_centre: [cell.mass_centre[0] / count, cell.mass_centre[1] / count],
            width2: (2.0 * cell.half_width).powi(2),
            count,
            first_child: 0,
            children: 0,
        }
    }

    /// Appends the non-empty children of cell `index` (summarised as `nodes[at]`) together, then
    /// their subtrees, depth first.
    fn lay_out_children(&self, index: usize, at: usize, nodes: &mut Vec<Node>) {
        let first = self.cells[index].first_child;
        if first == LEAF {
            return;
        }
        let children: Vec<usize> = (first..first + 4)
            .map(|c| c as usize)
            .filter(|&c| self.cells[c].count > 0)
            .collect();
        let start = nodes.len();
        nodes[at].first_child = start as u32;
        nodes[at].children = children.len() as u32;
        nodes.extend(children.iter().map(|&c| self.node(c)));
        for (offset, &child) in children.iter().enumerate() {
            self.lay_out_children(child, start + offset, nodes);
        }
    }
}

/// The centre and half width of a square holding every point, slightly enlarged so that the
/// points on its upper edges still fall inside.
fn bounding_square(points: &[f64]) -> ([f64; 2], f64) {
    let mut low = [f64::INFINITY; 2];
    let mut high = [f64::NEG_INFINITY; 2];
    for point in points.chunks_exact(2) {
        for axis in 0..2 {
            low[axis] = low[axis].min(point[axis]);
            high[axis] = high[axis].max(point[axis]);
        }
    }
    let centre = [(low[0] + high[0]) / 2.0, (low[1] + high[1]) / 2.0];
    let extent = (high[0] - low[0]).max(high[1] - low[1]);
    (centre, extent / 2.0 * (1.0 + 1e-6) + 1e-12)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exact(points: &[f64], point: [f64; 2]) -> ([f64; 2], f64) {
        let mut force = [0.0; 2];
        let mut sum = 0.0;
        for p in points.chunks_exact(2) {
            let (dx, dy) = (point[0] - p[0], point[1] - p[1]);
            let q = 1.0 / (1.0 + dx * dx + dy * dy);
            sum += q;
            force[0] += q * q * dx;
            force[1] += q * q * dy;
        }
        (force, sum)
    }

    fn spiral(n: usize) -> Vec<f64> {
        (0..n)
            .flat_map(|i| {
                let t = i as f64 * 0.37;
                [t.cos() * t, t.sin() * t]
            })
            .collect()
    }

    #[test]
    fn theta_zero_is_exact_and_duplicates_are_counted() {
        let mut points = spiral(200);
        points.extend_from_slice(&[1.0, 1.0, 1.0, 1.0]);
        let tree = QuadTree::build(&points);
        for point in [[1.0, 1.0], [0.3, -2.0], [40.0, 40.0]] {
            let (force, sum) = tree.repulsion(point, 0.0);
            let (want_force, want_sum) = exact(&points, point);
            assert!((sum - want_sum).abs() < 1e-9 * want_sum);
            for axis in 0..2 {
                assert!(
                    (force[axis] - want_force[axis]).abs() < 1e-9,
                    "{force:?} vs {want_force:?}"
                );
            }
        }
    }

    #[test]
    fn theta_half_approximates_the_sum() {
        let points = spiral(2000);
        let tree = QuadTree::build(&points);
        let (_, sum) = tree.repulsion([5.0, 5.0], 0.5);
        let (_, want) = exact(&points, [5.0, 5.0]);
        assert!((sum - want).abs() < 0.02 * want, "{sum} vs {want}");
    }
}
