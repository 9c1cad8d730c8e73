//! The paths service.

crate::scenarios!(
    a_path_is_created_and_read_back,
    a_path_without_an_endpoint_is_400,
    an_oversized_path_is_413,
    an_unknown_path_is_404,
    a_path_read_without_an_id_is_400,
    path_search_finds_by_start_prefix,
    path_search_refuses_a_negative_offset,
);

mod scenario {
    use reqwest::Method;

    use crate::app::{ADA, App, Auth, GRACE, body, form, query};

    pub async fn a_path_is_created_and_read_back(app: &App) {
        let (_, ada) = app.sign_up(&ADA).await;
        let (_, grace) = app.sign_up(&GRACE).await;
        let path = form(&[
            ("startpoint", "42 John Wall Street"),
            ("endpoint", "981 Morningstar Terrace"),
        ]);
        let id = app
            .expect(Method::POST, "/path", body(&path, Auth::Bearer(&ada)), 200)
            .await
            .json()
            .to_string();
        let read = app
            .expect(
                Method::GET,
                "/path",
                query(&[("id", &id)], Auth::Bearer(&grace)),
                200,
            )
            .await
            .json();
        assert_eq!(read["startpoint"], "42 John Wall Street");
    }

    pub async fn a_path_without_an_endpoint_is_400(app: &App) {
        let (_, token) = app.sign_up(&ADA).await;
        let half = body("startpoint=x", Auth::Bearer(&token));
        app.expect(Method::POST, "/path", half, 400).await;
    }

    pub async fn an_oversized_path_is_413(app: &App) {
        let (_, token) = app.sign_up(&ADA).await;
        let huge = format!("startpoint={}", "a".repeat(17 * 1024));
        app.expect(
            Method::POST,
            "/path",
            body(&huge, Auth::Bearer(&token)),
            413,
        )
        .await;
    }

    pub async fn an_unknown_path_is_404(app: &App) {
        let (_, token) = app.sign_up(&ADA).await;
        let q = [("id", "999999")];
        app.expect(Method::GET, "/path", query(&q, Auth::Bearer(&token)), 404)
            .await;
    }

    pub async fn a_path_read_without_an_id_is_400(app: &App) {
        let (_, token) = app.sign_up(&ADA).await;
        app.expect(Method::GET, "/path", query(&[], Auth::Bearer(&token)), 400)
            .await;
    }

    pub async fn path_search_finds_by_start_prefix(app: &App) {
        let (_, token) = app.sign_up(&ADA).await;
        let auth = Auth::Bearer(&token);
        for (start, end) in [("42 John Wall Street", "1 A"), ("7 Other Road", "2 B")] {
            let path = form(&[("startpoint", start), ("endpoint", end)]);
            app.expect(Method::POST, "/path", body(&path, auth), 200)
                .await;
        }
        let q = [("startpoint", "42 John"), ("offset", "0")];
        let found = app
            .expect(Method::GET, "/path/search", query(&q, auth), 200)
            .await;
        assert_eq!(found.json().as_array().unwrap().len(), 1, "{}", found.body);
    }

    pub async fn path_search_refuses_a_negative_offset(app: &App) {
        let (_, token) = app.sign_up(&ADA).await;
        let q = [("offset", "-1")];
        app.expect(
            Method::GET,
            "/path/search",
            query(&q, Auth::Bearer(&token)),
            400,
        )
        .await;
    }
}
