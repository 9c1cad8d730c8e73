//! Storage: several processes (here: several pools) starting together on one database migrate
//! it once and then share it; each service can run on its own pool.

use travel::Store;

use crate::both;
use crate::support::{Db, TestDb};

both!(concurrent_starts_share_one_database);

async fn concurrent_starts_share_one_database(db: Db) {
    let test_db = TestDb::new(db).await;
    let url = test_db.url.clone();
    let stores = futures_join_all(
        (0..4)
            .map(|_| {
                let url = url.clone();
                tokio::spawn(async move { Store::connect(&url).await })
            })
            .collect(),
    )
    .await;
    let stores: Vec<Store> = stores.into_iter().map(|s| s.unwrap()).collect();
    // Writes through one pool are seen through another.
    let id = travel::db::paths::insert(&stores[0], "a", "b")
        .await
        .unwrap();
    let p = travel::db::paths::by_id(&stores[3], id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(p.startpoint, "a");
    for s in &stores {
        s.ping().await.unwrap();
        s.close().await;
    }
}

async fn futures_join_all<T>(handles: Vec<tokio::task::JoinHandle<T>>) -> Vec<T> {
    let mut out = Vec::new();
    for h in handles {
        out.push(h.await.unwrap());
    }
    out
}
