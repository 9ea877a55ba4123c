//! Work split over the machine's cores with scoped threads, in contiguous parts: chips are
//! analysed and cut this way, and detection cuts its candidates' views this way.

fn threads_for(items: usize) -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get()).min(items).max(1)
}

/// `f` over `items` on all cores (scoped threads over contiguous parts), results in order.
pub fn par_map<T: Sync, R: Send>(items: &[T], f: impl Fn(&T) -> R + Sync) -> Vec<R> {
    let threads = threads_for(items.len());
    if threads == 1 {
        return items.iter().map(f).collect();
    }
    let per = items.len().div_ceil(threads);
    let f = &f;
    std::thread::scope(|scope| {
        let handles: Vec<_> = items
            .chunks(per)
            .map(|part| scope.spawn(move || part.iter().map(f).collect::<Vec<R>>()))
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("a worker thread panicked"))
            .collect()
    })
}

/// `f` on every item, in place, on all cores.
pub fn par_for_each_mut<T: Send>(items: &mut [T], f: impl Fn(&mut T) + Sync) {
    let threads = threads_for(items.len());
    if threads == 1 {
        items.iter_mut().for_each(f);
        return;
    }
    let f = &f;
    std::thread::scope(|scope| {
        for part in items.chunks_mut(items.len().div_ceil(threads)) {
            scope.spawn(move || part.iter_mut().for_each(f));
        }
    });
}
