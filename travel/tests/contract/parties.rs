//! The parties service: memberships of users in trips.

crate::scenarios!(
    joining_a_trip_twice_is_409,
    joining_an_unknown_trip_is_404,
    joining_without_a_trip_is_400,
    a_membership_is_read_back,
    a_missing_membership_is_404,
    a_non_integer_trip_id_is_400,
    creating_a_membership_is_idempotent,
    creating_a_membership_of_an_unknown_trip_is_404,
    a_fractional_trip_id_is_400,
    parties_lists_the_callers_memberships,
    parties_refuses_a_non_integer_limit,
);

mod scenario {
    use reqwest::Method;
    use serde_json::json;

    use crate::app::{ADA, App, Auth, GRACE, query};

    const TRIP_1: [(&str, &str); 1] = [("id_trip", "1")];
    const NOWHERE: [(&str, &str); 1] = [("id_trip", "999999")];

    /// Ada's token after she created trip 1, and Grace's.
    async fn ada_with_a_trip_and_grace(app: &App) -> (String, String) {
        let (_, ada) = app.sign_up(&ADA).await;
        let (_, grace) = app.sign_up(&GRACE).await;
        app.create_trip(&ada).await;
        (ada, grace)
    }

    pub async fn joining_a_trip_twice_is_409(app: &App) {
        let (_, grace) = ada_with_a_trip_and_grace(app).await;
        let join = query(&TRIP_1, Auth::Bearer(&grace));
        app.expect(Method::POST, "/party/join", join, 200).await;
        app.expect(Method::POST, "/party/join", join, 409).await;
    }

    pub async fn joining_an_unknown_trip_is_404(app: &App) {
        let (_, token) = app.sign_up(&GRACE).await;
        let join = query(&NOWHERE, Auth::Bearer(&token));
        app.expect(Method::POST, "/party/join", join, 404).await;
    }

    pub async fn joining_without_a_trip_is_400(app: &App) {
        let (_, token) = app.sign_up(&GRACE).await;
        let join = query(&[], Auth::Bearer(&token));
        app.expect(Method::POST, "/party/join", join, 400).await;
    }

    pub async fn a_membership_is_read_back(app: &App) {
        let (_, grace) = ada_with_a_trip_and_grace(app).await;
        let auth = Auth::Bearer(&grace);
        app.expect(Method::POST, "/party/join", query(&TRIP_1, auth), 200)
            .await;
        let party = app
            .expect(Method::GET, "/party", query(&TRIP_1, auth), 200)
            .await
            .json();
        assert_eq!(party["id_trip"], 1);
    }

    pub async fn a_missing_membership_is_404(app: &App) {
        let (_, grace) = ada_with_a_trip_and_grace(app).await;
        app.expect(
            Method::GET,
            "/party",
            query(&TRIP_1, Auth::Bearer(&grace)),
            404,
        )
        .await;
    }

    pub async fn a_non_integer_trip_id_is_400(app: &App) {
        let (_, token) = app.sign_up(&GRACE).await;
        let q = [("id_trip", "x")];
        app.expect(Method::GET, "/party", query(&q, Auth::Bearer(&token)), 400)
            .await;
    }

    pub async fn creating_a_membership_is_idempotent(app: &App) {
        // Ada is already a member: trips made her one when she created the trip.
        let (ada, _) = ada_with_a_trip_and_grace(app).await;
        app.expect(
            Method::POST,
            "/party",
            query(&TRIP_1, Auth::Bearer(&ada)),
            200,
        )
        .await;
    }

    pub async fn creating_a_membership_of_an_unknown_trip_is_404(app: &App) {
        let (_, token) = app.sign_up(&ADA).await;
        app.expect(
            Method::POST,
            "/party",
            query(&NOWHERE, Auth::Bearer(&token)),
            404,
        )
        .await;
    }

    pub async fn a_fractional_trip_id_is_400(app: &App) {
        let (_, token) = app.sign_up(&ADA).await;
        let q = [("id_trip", "1.0")];
        app.expect(Method::POST, "/party", query(&q, Auth::Bearer(&token)), 400)
            .await;
    }

    pub async fn parties_lists_the_callers_memberships(app: &App) {
        let (_, ada) = app.sign_up(&ADA).await;
        let (grace_id, grace) = app.sign_up(&GRACE).await;
        app.create_trip(&ada).await;
        let auth = Auth::Bearer(&grace);
        app.expect(Method::POST, "/party/join", query(&TRIP_1, auth), 200)
            .await;
        let parties = app
            .expect(Method::GET, "/parties", query(&[], auth), 200)
            .await;
        assert_eq!(
            parties.json(),
            json!([{"id_participant": grace_id, "id_trip": 1}])
        );
    }

    pub async fn parties_refuses_a_non_integer_limit(app: &App) {
        let (_, token) = app.sign_up(&GRACE).await;
        let q = [("limit", "x")];
        app.expect(
            Method::GET,
            "/parties",
            query(&q, Auth::Bearer(&token)),
            400,
        )
        .await;
    }
}
